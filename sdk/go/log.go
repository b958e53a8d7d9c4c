package shanhai

import (
	"bytes"
	"context"
	"log/slog"
	"sync"
	"time"

	"github.com/shanhai-edge/shanhai/sdk/go/internal/hostcall"
)

// Levels of the log import (docs/abi.md, "Host imports").
const (
	levelDebug int32 = 1
	levelInfo  int32 = 2
	levelWarn  int32 = 3
	levelError int32 = 4
)

// LogLevel is the lowest level the SDK's logger sends to the host; records
// below it are dropped in the guest before they are formatted. Its zero
// value is slog.LevelInfo, like slog's default logger. Change it in init:
//
//	shanhai.LogLevel.Set(slog.LevelDebug)
var LogLevel slog.LevelVar

var logger = slog.New(&hostHandler{
	text:  slog.NewTextHandler(&hostLogLine, &slog.HandlerOptions{Level: &LogLevel}),
	state: &hostLogLine,
})

// The SDK's logger becomes the default one, so slog's top-level functions
// and the standard log package both reach the host.
func init() {
	slog.SetDefault(logger)
}

// Logger returns the logger that sends records to the host's log, which
// tags each line with the module, its version and the request id. It is
// also installed as slog's default logger, so slog.Info and log.Printf work
// too.
//
// A record becomes one line, "msg key=value key=value", its attributes
// formatted as by slog.TextHandler; levels map to the host's: below Info to
// debug, below Warn to info, below Error to warn, the rest to error.
func Logger() *slog.Logger { return logger }

// hostHandler is the slog.Handler behind Logger. Attribute formatting,
// groups and WithAttrs are slog.TextHandler's: text formats each record
// into state with an empty message and no time, and Handle replaces the
// level=... msg="" prefix TextHandler writes with the real message.
type hostHandler struct {
	text  slog.Handler
	state *logLine
}

// logLine is the line being built; one is shared by a handler and every
// handler derived from it with WithAttrs or WithGroup.
type logLine struct {
	mu     sync.Mutex
	buf    []byte // the line: message, then attributes
	prefix []byte // what TextHandler writes before the attributes
}

var hostLogLine logLine

// Write receives TextHandler's output for one record: prefix, then
// " key=value..." and a newline.
func (l *logLine) Write(p []byte) (int, error) {
	n := len(p)
	p = bytes.TrimSuffix(p, []byte{'\n'})
	if rest, ok := bytes.CutPrefix(p, l.prefix); ok {
		l.buf = append(l.buf, rest...)
	} else if len(p) > 0 {
		// Not TextHandler's usual shape; keep everything rather than guess.
		l.buf = append(l.buf, ' ')
		l.buf = append(l.buf, p...)
	}
	return n, nil
}

func (h *hostHandler) Enabled(ctx context.Context, level slog.Level) bool {
	return h.text.Enabled(ctx, level)
}

func (h *hostHandler) Handle(ctx context.Context, r slog.Record) error {
	l := h.state
	l.mu.Lock()
	defer l.mu.Unlock()
	l.buf = append(l.buf[:0], r.Message...)
	// TextHandler leaves out a zero time; the empty message it writes as
	// msg="", right after the level.
	r.Time, r.Message = time.Time{}, ""
	l.prefix = append(append(append(l.prefix[:0], "level="...), r.Level.String()...), ` msg=""`...)
	err := h.text.Handle(ctx, r)
	hostcall.Log(hostLevel(r.Level), l.buf)
	if cap(l.buf) > 64<<10 {
		l.buf = nil // a huge line should not pin its buffer
	}
	return err
}

func (h *hostHandler) WithAttrs(attrs []slog.Attr) slog.Handler {
	return &hostHandler{text: h.text.WithAttrs(attrs), state: h.state}
}

func (h *hostHandler) WithGroup(name string) slog.Handler {
	return &hostHandler{text: h.text.WithGroup(name), state: h.state}
}

// hostLevel maps a slog level to the log import's level.
func hostLevel(l slog.Level) int32 {
	switch {
	case l < slog.LevelInfo:
		return levelDebug
	case l < slog.LevelWarn:
		return levelInfo
	case l < slog.LevelError:
		return levelWarn
	default:
		return levelError
	}
}
