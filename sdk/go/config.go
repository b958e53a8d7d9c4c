package shanhai

import "github.com/shanhai-edge/shanhai/sdk/go/internal/hostcall"

// Config returns the value of the module's config variable key, as set in
// the gateway's configuration for this module. A variable that is not set
// gives an error matching [ErrNotFound].
func Config(key string) (string, error) {
	n, err := hostResult("config_get", hostcall.ConfigGet(key))
	if err != nil {
		return "", err
	}
	value, err := readStaged("config_get", n)
	if err != nil {
		return "", err
	}
	return string(value), nil
}
