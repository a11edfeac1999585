//go:build !linux

package dnsd

import (
	"errors"
	"net"
	"time"
)

// run reads datagrams one by one until the socket closes.
func (w *worker) run() {
	defer w.wg.Done()
	var lim logLimit
	in := make([]byte, 65535)
	for {
		n, from, err := w.conn.ReadFromUDPAddrPort(in)
		if err != nil {
			if errors.Is(err, net.ErrClosed) || w.ctx.Err() != nil {
				return
			}
			if ok, sup := lim.allow(time.Now()); ok {
				w.h.log.Warn("DNS read failed", "err", err, "suppressed", sup)
			}
			continue
		}
		w.handle(in[:n], from)
	}
}
