//go:build !wasm

package shanhai_test

import (
	"errors"
	"math"
	"slices"
	"testing"

	shanhai "github.com/shanhai-edge/shanhai/sdk/go"
	"github.com/shanhai-edge/shanhai/sdk/go/shanhaitest"
)

func TestGPIO(t *testing.T) {
	shanhaitest.Reset()
	shanhaitest.SetGrants(shanhaitest.Grants{GPIOIn: []int{17}, GPIOOut: []int{18}})
	shanhaitest.SetGPIO(17, true)
	shanhaitest.SetGPIO(18, false)

	if high, err := shanhai.GPIORead(17); !high || err != nil {
		t.Errorf("read 17: %v, %v", high, err)
	}
	shanhaitest.SetGPIO(17, false)
	if high, err := shanhai.GPIORead(17); high || err != nil {
		t.Errorf("read 17 after it went low: %v, %v", high, err)
	}
	for _, v := range []bool{true, false, true} {
		if err := shanhai.GPIOWrite(18, v); err != nil {
			t.Fatal(err)
		}
	}
	// An output pin can be read back.
	if high, err := shanhai.GPIORead(18); !high || err != nil {
		t.Errorf("read 18: %v, %v", high, err)
	}
	if high, ok := shanhaitest.GPIO(18); !high || !ok {
		t.Errorf("the board's pin 18: %v, %v", high, ok)
	}
	want := []shanhaitest.GPIOWrite{{Pin: 18, High: true}, {Pin: 18, High: false}, {Pin: 18, High: true}}
	if got := shanhaitest.GPIOWrites(); !slices.Equal(got, want) {
		t.Errorf("writes %v", got)
	}
}

func TestGPIOErrors(t *testing.T) {
	shanhaitest.Reset()
	shanhaitest.SetGrants(shanhaitest.Grants{GPIOIn: []int{17}, GPIOOut: []int{18, 19}})
	shanhaitest.SetGPIO(17, true)
	shanhaitest.SetGPIO(4, true)

	err := shanhai.GPIOWrite(17, true)
	if want := "shanhai: gpio_write: denied: GPIO 17 is not granted as an output (grants.gpio_out)"; !errors.Is(err, shanhai.ErrDenied) || err.Error() != want {
		t.Errorf("writing an input pin: %v", err)
	}
	if _, err := shanhai.GPIORead(4); !errors.Is(err, shanhai.ErrDenied) {
		t.Errorf("reading an ungranted pin: %v", err)
	}
	if err := shanhai.GPIOWrite(19, true); !errors.Is(err, shanhai.ErrNotFound) {
		t.Errorf("a pin the board lacks: %v", err)
	}
	for _, pin := range []int{math.MaxInt32 + 1, math.MinInt32 - 1} {
		if _, err := shanhai.GPIORead(pin); !errors.Is(err, shanhai.ErrInvalidArgument) {
			t.Errorf("read pin %d: %v", pin, err)
		}
		if err := shanhai.GPIOWrite(pin, true); !errors.Is(err, shanhai.ErrInvalidArgument) {
			t.Errorf("write pin %d: %v", pin, err)
		}
	}
	if len(shanhaitest.GPIOWrites()) != 0 {
		t.Error("a refused write was recorded")
	}
}
