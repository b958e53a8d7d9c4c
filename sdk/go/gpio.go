package shanhai

import (
	"math"

	"github.com/shanhai-edge/shanhai/sdk/go/internal/hostcall"
)

// GPIORead reads GPIO pin (the number of the board's sysfs GPIO
// interface): true when it is high. The pin must be in the module's
// gpio_in or gpio_out grant, or the call fails with [ErrDenied]; a pin the
// board does not have is [ErrNotFound], an I/O error [ErrUnavailable].
//
//	[modules.sensor.grants]
//	gpio_in = [17]
//
//	pressed, err := shanhai.GPIORead(17)
func GPIORead(pin int) (bool, error) {
	if pin < math.MinInt32 || pin > math.MaxInt32 {
		return false, pinOutOfRange("gpio_read")
	}
	v, err := clearingResult("gpio_read", hostcall.GPIORead(int32(pin)))
	return v != 0, err
}

// GPIOWrite drives output pin high or low. The pin must be in the
// module's gpio_out grant, or the call fails with [ErrDenied]; other
// errors are those of [GPIORead].
//
//	[modules.relay.grants]
//	gpio_out = [18]
//
//	err := shanhai.GPIOWrite(18, true)
func GPIOWrite(pin int, high bool) error {
	if pin < math.MinInt32 || pin > math.MaxInt32 {
		return pinOutOfRange("gpio_write")
	}
	var v int32
	if high {
		v = 1
	}
	_, err := clearingResult("gpio_write", hostcall.GPIOWrite(int32(pin), v))
	return err
}

func pinOutOfRange(fn string) error {
	return &HostError{Func: fn, Status: hostcall.StatusInvalidArgument, Message: "the pin number is out of range"}
}
