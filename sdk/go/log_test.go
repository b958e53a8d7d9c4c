//go:build !wasm

package shanhai_test

import (
	"errors"
	"log"
	"log/slog"
	"reflect"
	"testing"
	"time"

	shanhai "github.com/shanhai-edge/shanhai/sdk/go"
	"github.com/shanhai-edge/shanhai/sdk/go/shanhaitest"
)

func TestLogFormatAndLevels(t *testing.T) {
	shanhaitest.Reset()
	defer shanhai.LogLevel.Set(shanhai.LogLevel.Level())
	shanhai.LogLevel.Set(slog.LevelDebug - 4)

	l := shanhai.Logger()
	l.Debug("dbg")
	l.Info("hello world", "user", "edge", "n", 3, "quoted", "a b", "empty", "")
	l.Warn("careful", "d", 1500*time.Millisecond, "ok", true)
	l.Error("failed", "err", errors.New("disk full"))
	l.With("a", 1).WithGroup("g").Info("grouped", "b", 2, slog.Group("h", "c", 3))
	l.Log(nil, slog.LevelInfo+2, "custom info")
	l.Log(nil, slog.LevelError+4, "custom error")
	l.Log(nil, slog.LevelDebug-4, "very verbose")
	l.Info("not attrs: level=x msg=y", "level", "L", "msg", "M")

	want := []shanhaitest.LogLine{
		{Level: 1, Text: "dbg"},
		{Level: 2, Text: `hello world user=edge n=3 quoted="a b" empty=""`},
		{Level: 3, Text: "careful d=1.5s ok=true"},
		{Level: 4, Text: `failed err="disk full"`},
		{Level: 2, Text: "grouped a=1 g.b=2 g.h.c=3"},
		{Level: 2, Text: "custom info"},
		{Level: 4, Text: "custom error"},
		{Level: 1, Text: "very verbose"},
		{Level: 2, Text: "not attrs: level=x msg=y level=L msg=M"},
	}
	if got := shanhaitest.Logs(); !reflect.DeepEqual(got, want) {
		t.Errorf("logs\n %q\nwant\n %q", got, want)
	}
}

func TestLogDefaultsAndLevelFilter(t *testing.T) {
	shanhaitest.Reset()
	if slog.Default().Handler() != shanhai.Logger().Handler() {
		t.Fatal("the SDK logger is not slog's default")
	}
	slog.Debug("dropped: below the default Info level")
	slog.Info("via slog", "k", "v")
	log.Printf("via log %d", 7)
	shanhai.LogLevel.Set(slog.LevelError)
	defer shanhai.LogLevel.Set(slog.LevelInfo)
	slog.Warn("dropped: below Error")

	want := []shanhaitest.LogLine{{Level: 2, Text: "via slog k=v"}, {Level: 2, Text: "via log 7"}}
	if got := shanhaitest.Logs(); !reflect.DeepEqual(got, want) {
		t.Errorf("logs %q, want %q", got, want)
	}
}
