package dhcpd

import (
	"net"
	"syscall"

	"golang.org/x/sys/unix"
)

// frameBatch sends a chunk of DHCPv4 replies, whole Ethernet frames, with
// one sendmmsg on the bridge's packet socket.
type frameBatch struct {
	ifindex int32
	b       *mmsgBatch[unix.RawSockaddrLinklayer]
}

// send sends frames[i] to macs[i] and returns each one's error (nil: sent).
func (fb *frameBatch) send(frames [][]byte, macs []net.HardwareAddr) []error {
	fb.b.start(len(frames))
	for i, f := range frames {
		to := unix.RawSockaddrLinklayer{Family: unix.AF_PACKET, Ifindex: fb.ifindex, Halen: 6}
		copy(to.Addr[:], macs[i])
		fb.b.put(i, f, to)
	}
	return fb.b.flush()
}

// batchSender is frameBatch.send on raw, nil if raw has no descriptor.
func batchSender(raw interface {
	SyscallConn() (syscall.RawConn, error)
}, ifindex int) func([][]byte, []net.HardwareAddr) []error {
	rc, err := raw.SyscallConn()
	if err != nil {
		return nil
	}
	fb := &frameBatch{ifindex: int32(ifindex), b: newMmsgBatch[unix.RawSockaddrLinklayer](rc)}
	return fb.send
}
