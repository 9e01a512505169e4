//go:build !linux

package emulator

import "net"

// enableRxTimestamps reports false: receive stamps are read on Linux only.
func enableRxTimestamps(*net.TCPListener) bool { return false }

// newRxConn is not used without receive stamps.
func newRxConn(*net.TCPConn) (*rxConn, bool) { return nil, false }
