//go:build !linux

package tftpd

import (
	"fmt"
	"runtime"
	"syscall"
)

// bindToDevice: only Linux can limit a socket to one interface here, and
// serving every interface instead is not a safe fallback.
func bindToDevice(dev string) func(string, string, syscall.RawConn) error {
	if dev == "" {
		return nil
	}
	return func(string, string, syscall.RawConn) error {
		return fmt.Errorf("binding to %s: unsupported on %s", dev, runtime.GOOS)
	}
}
