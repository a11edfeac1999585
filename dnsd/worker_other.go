//go:build !linux

package dnsd

import (
	"errors"
	"log/slog"
	"net"
)

// run reads datagrams one by one until the socket closes.
func (w *worker) run() {
	defer w.wg.Done()
	in := make([]byte, 65535)
	for {
		n, from, err := w.conn.ReadFromUDPAddrPort(in)
		if err != nil {
			if errors.Is(err, net.ErrClosed) || w.ctx.Err() != nil {
				return
			}
			w.h.lim.Log(w.h.log, slog.LevelWarn, "DNS read failed", "err", err)
			continue
		}
		w.handle(in[:n], from)
	}
}
