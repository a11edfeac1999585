package dhcpd

import (
	"math/bits"
	"time"
)

// bitset4 is a set of positions 0..n-1 with a summary level per 64 words,
// so that the next member after any position is found in O(log64 n): three
// word reads for a /16.
type bitset4 struct {
	// lv[0] holds the members; a bit of lv[i+1] is set when that word of
	// lv[i] is not zero. The last level is one word.
	lv [][]uint64
}

// newFullBitset4 is the set of all of 0..n-1: made in O(n/64), as a
// pool's index starts with every address free.
func newFullBitset4(n int) bitset4 {
	var b bitset4
	for {
		w := max((n+63)/64, 1)
		words := make([]uint64, w)
		for i := range words {
			words[i] = ^uint64(0)
		}
		if r := n % 64; r != 0 {
			words[w-1] = 1<<r - 1
		}
		if n == 0 {
			words[0] = 0
		}
		b.lv = append(b.lv, words)
		if w == 1 {
			return b
		}
		n = w
	}
}

func (b *bitset4) has(i int) bool { return b.lv[0][i>>6]&(1<<(i&63)) != 0 }

func (b *bitset4) add(i int) {
	for _, words := range b.lv {
		w := i >> 6
		was := words[w]
		words[w] |= 1 << (i & 63)
		if was != 0 {
			return
		}
		i = w
	}
}

func (b *bitset4) remove(i int) {
	for _, words := range b.lv {
		w := i >> 6
		words[w] &^= 1 << (i & 63)
		if words[w] != 0 {
			return
		}
		i = w
	}
}

// next is the first member at or after i, or -1.
func (b *bitset4) next(i int) int { return b.nextIn(0, i) }

func (b *bitset4) nextIn(l, i int) int {
	words := b.lv[l]
	w := i >> 6
	if w >= len(words) {
		return -1
	}
	if m := words[w] >> (i & 63); m != 0 {
		return i + bits.TrailingZeros64(m)
	}
	if l+1 == len(b.lv) {
		return -1 // the last level is one word
	}
	w = b.nextIn(l+1, w+1)
	if w < 0 {
		return -1
	}
	return w<<6 + bits.TrailingZeros64(words[w])
}

// due4 is a time at which the state of an address may change.
type due4 struct {
	at time.Time
	a  uint32 // a2u4
}

// dueHeap4 is a min-heap of due4 by time (written out rather than through
// container/heap, whose interface boxes every pushed value).
type dueHeap4 []due4

func (h *dueHeap4) push(d due4) {
	*h = append(*h, d)
	s := *h
	for i := len(s) - 1; i > 0; {
		up := (i - 1) / 2
		if !s[i].at.Before(s[up].at) {
			break
		}
		s[i], s[up] = s[up], s[i]
		i = up
	}
}

func (h *dueHeap4) pop() due4 {
	s := *h
	top := s[0]
	n := len(s) - 1
	s[0] = s[n]
	s = s[:n]
	for i := 0; ; {
		l, small := 2*i+1, i
		if l < n && s[l].at.Before(s[small].at) {
			small = l
		}
		if r := l + 1; r < n && s[r].at.Before(s[small].at) {
			small = r
		}
		if small == i {
			break
		}
		s[i], s[small] = s[small], s[i]
		i = small
	}
	*h = s
	return top
}

// free4 indexes a pool4 at one time (at): which range positions no client
// holds, reserves or may not have, and how many leases are live. The pool
// calls touch for every address whose records change, and advance before
// using it; records that run out are found through a heap of the times at
// which they do, so no operation walks the pool.
type free4 struct {
	valid bool
	at    time.Time
	free  bitset4 // positions (as config4.nth numbers them) free for anyone
	nfree int
	live  int // bindings4 that have not expired at `at`
	// due holds the times at which an address's state may change next; an
	// address is pushed again only for an earlier time than the one it
	// waits for (dueAt), so the heap stays within a few entries per
	// address however often a client is re-offered the same one. Both
	// hold only addresses with a record: a /8 costs no more than a /24.
	due   dueHeap4
	dueAt map[uint32]time.Time
}

// schedule makes the index look at a again at t.
func (x *free4) schedule(a uint32, t time.Time) {
	if old, ok := x.dueAt[a]; ok && !t.Before(old) {
		return
	}
	x.dueAt[a] = t
	x.due.push(due4{at: t, a: a})
}

// popped forgets a's wait for t, which the heap has just given.
func (x *free4) popped(a uint32, t time.Time) {
	if old, ok := x.dueAt[a]; ok && old.Equal(t) {
		delete(x.dueAt, a)
	}
}
