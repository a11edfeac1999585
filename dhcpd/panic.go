package dhcpd

import (
	"log/slog"
	"runtime/debug"

	"github.com/vnetd/vnetd/internal/ratelog"
)

// logPanic logs r, recovered from serving one packet, through lim: a
// packet that makes the server panic can be sent a thousand times a
// second. The stack is taken only for a line that is logged, since it
// costs more than the rest of the packet's handling.
func logPanic(log *slog.Logger, lim *ratelog.Limiter, msg string, r any, args ...any) {
	ok, suppressed := lim.Allow(msg)
	if !ok {
		return
	}
	args = append(args, "panic", r)
	if suppressed > 0 {
		args = append(args, "suppressed", suppressed)
	}
	log.Error(msg, append(args, "stack", string(debug.Stack()))...)
}
