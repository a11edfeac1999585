//go:build linux

package dhcpd

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"testing"
	"time"
)

// TestUDPBatch6 sends a batch larger than one sendmmsg chunk over the
// loopback: every answer arrives, whole and in order.
func TestUDPBatch6(t *testing.T) {
	rx, err := net.ListenUDP("udp6", &net.UDPAddr{IP: net.IPv6loopback})
	if err != nil {
		t.Skipf("no IPv6 loopback: %v", err)
	}
	defer rx.Close()
	tx, err := net.ListenUDP("udp6", &net.UDPAddr{IP: net.IPv6loopback})
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Close()
	b := newUDPBatch6(tx, rx.LocalAddr().(*net.UDPAddr).Port, 0)
	if b == nil {
		t.Fatal("no sender")
	}
	var outs []out6
	for i := range 40 {
		outs = append(outs, out6{b: fmt.Appendf(nil, "answer %d", i), to: netip.IPv6Loopback()})
	}
	for i, err := range b.send(outs) {
		if err != nil {
			t.Fatalf("answer %d: %v", i, err)
		}
	}
	buf := make([]byte, 100)
	for i, o := range outs {
		rx.SetReadDeadline(time.Now().Add(5 * time.Second))
		n, from, err := rx.ReadFromUDPAddrPort(buf)
		if err != nil {
			t.Fatalf("answer %d: %v", i, err)
		}
		if !bytes.Equal(buf[:n], o.b) || from != tx.LocalAddr().(*net.UDPAddr).AddrPort() {
			t.Fatalf("answer %d: %q from %s", i, buf[:n], from)
		}
	}
	// A closed socket fails every answer, with net.ErrClosed.
	tx.Close()
	for i, err := range b.send(outs[:3]) {
		if !errors.Is(err, net.ErrClosed) {
			t.Errorf("answer %d on a closed socket: %v", i, err)
		}
	}
}

// BenchmarkSend6 is the cost of sending an answer over the loopback, one
// write each as before and in sendmmsg chunks of paceChunk.
func BenchmarkSend6(b *testing.B) {
	rx, err := net.ListenUDP("udp6", &net.UDPAddr{IP: net.IPv6loopback})
	if err != nil {
		b.Skipf("no IPv6 loopback: %v", err)
	}
	defer rx.Close()
	go func() { // drain, so that the answers are delivered, not dropped
		buf := make([]byte, 1500)
		for {
			if _, _, err := rx.ReadFromUDPAddrPort(buf); err != nil {
				return
			}
		}
	}()
	tx, err := net.ListenUDP("udp6", &net.UDPAddr{IP: net.IPv6loopback})
	if err != nil {
		b.Fatal(err)
	}
	defer tx.Close()
	to := rx.LocalAddr().(*net.UDPAddr).AddrPort()
	outs := make([]out6, paceChunk)
	for i := range outs {
		outs[i] = out6{b: make([]byte, 120), to: to.Addr()}
	}
	b.Run("write", func(b *testing.B) {
		for i := range b.N {
			if _, err := tx.WriteToUDPAddrPort(outs[i%len(outs)].b, to); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("sendmmsg", func(b *testing.B) {
		u := newUDPBatch6(tx, int(to.Port()), 0)
		for i := 0; i < b.N; i += len(outs) {
			u.send(outs[:min(len(outs), b.N-i)])
		}
	})
}
