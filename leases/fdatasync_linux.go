package leases

import (
	"os"

	"golang.org/x/sys/unix"
)

// fdatasync flushes f's data and the size that reads of it need, without
// the timestamps fsync would write too.
func fdatasync(f *os.File) error {
	for {
		err := unix.Fdatasync(int(f.Fd()))
		if err != unix.EINTR {
			return err
		}
	}
}
