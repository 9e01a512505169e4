package emulator

import "errors"

// Sentinel errors.
var (
	// ErrInvalidConfig is wrapped by every error New and Config.Validate
	// return; the message names the field and value.
	ErrInvalidConfig = errors.New("emulator: invalid config")
	// ErrUnknownKey is returned by SetLeaked for a key name the emulator does
	// not know.
	ErrUnknownKey = errors.New("emulator: unknown key")
	// ErrDuplicateKey is returned by AddKey for a key whose name or secret is
	// already in use.
	ErrDuplicateKey = errors.New("emulator: duplicate key")
)
