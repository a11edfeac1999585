//go:build !linux

package leases

import "os"

func fdatasync(f *os.File) error { return f.Sync() }
