// Package ratelog limits per-packet log lines: a peer that sends a bad
// packet a microsecond must not be able to fill the journal, so each kind of
// message (its text) is logged at most once per interval, with the number of
// lines suppressed since the last one.
package ratelog

import (
	"context"
	"log/slog"
	"sync"
	"time"
)

// DefaultEvery is how often one kind of message may be logged when Limiter.Every is zero.
const DefaultEvery = 10 * time.Second

// maxKinds bounds the memory a Limiter holds: message texts are constants in
// the code, so more kinds than this means a caller put variable data into the
// message, and the map is reset rather than grown.
const maxKinds = 256

// Limiter logs each message text at most once per Every. The zero value is
// ready to use; it is safe for concurrent use.
type Limiter struct {
	Every time.Duration
	// Now is the clock; nil means time.Now.
	Now func() time.Time

	mu    sync.Mutex
	kinds map[string]*kind
}

type kind struct {
	next       time.Time
	suppressed int
}

// Log logs msg at level unless a line with the same msg was logged less than
// Every ago; the first line after a quiet interval carries
// "suppressed"=N when N lines were dropped in between.
func (l *Limiter) Log(log *slog.Logger, level slog.Level, msg string, args ...any) {
	if log == nil || !log.Enabled(context.Background(), level) {
		return
	}
	ok, n := l.Allow(msg)
	if !ok {
		return
	}
	if n > 0 {
		args = append(args, "suppressed", n)
	}
	log.Log(context.Background(), level, msg, args...)
}

// Allow reports whether a line of this kind may be logged now, and how many
// were suppressed since the last one that was.
func (l *Limiter) Allow(msg string) (bool, int) {
	now := time.Now
	if l.Now != nil {
		now = l.Now
	}
	every := l.Every
	if every <= 0 {
		every = DefaultEvery
	}
	t := now()
	l.mu.Lock()
	defer l.mu.Unlock()
	k := l.kinds[msg]
	if k == nil {
		if l.kinds == nil || len(l.kinds) >= maxKinds {
			l.kinds = make(map[string]*kind)
		}
		k = &kind{}
		l.kinds[msg] = k
	}
	if t.Before(k.next) {
		k.suppressed++
		return false, 0
	}
	n := k.suppressed
	k.suppressed = 0
	k.next = t.Add(every)
	return true, n
}
