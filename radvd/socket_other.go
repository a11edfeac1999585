//go:build !linux

package radvd

import (
	"errors"
	"runtime"
)

func listen(string) (conn, error) {
	return nil, errors.New("router advertisements need Linux (SO_BINDTODEVICE, netlink), not " + runtime.GOOS)
}
