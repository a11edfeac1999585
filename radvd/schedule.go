package radvd

import (
	"net/netip"
	"time"
)

// timing holds the protocol constants of RFC 4861 §6.2.1 and §10 and our
// own limits on solicited answers.
type timing struct {
	minInterval, maxInterval time.Duration
	// initialAdverts (MAX_INITIAL_RTR_ADVERTISEMENTS) advertisements after
	// start or a change are followed by gaps of at most maxInitial
	// (MAX_INITIAL_RTR_ADVERT_INTERVAL), so guests learn quickly.
	initialAdverts int
	maxInitial     time.Duration
	// minDelay (MIN_DELAY_BETWEEN_RAS) separates multicast advertisements.
	minDelay time.Duration
	// maxRADelay (MAX_RA_DELAY_TIME) bounds the random delay of a
	// solicited answer, which keeps many guests soliciting at once from
	// being answered in lockstep.
	maxRADelay time.Duration
	// sourceGap is the least time between two unicast answers to the same
	// address: a guest's kernel solicits every 4 s, rdisc6 every 1 s.
	sourceGap time.Duration
	// unicastRate and unicastBurst bound unicast answers altogether (a
	// token bucket), so a flood of solicitations from forged sources
	// cannot turn the bridge into an amplifier; maxSources bounds the
	// addresses remembered for sourceGap and pending answers.
	unicastRate  float64 // per second
	unicastBurst float64
	maxSources   int
	// retryMin and retryMax bound the back-off while the bridge has no
	// usable link-local address: DAD runs for 1 to 2 s after the bridge
	// comes up, so the first tries are close together. A bridge without
	// guests has no carrier and so no address at all, which is the usual
	// state of an idle network: it costs a look-up every retryMax, and a
	// solicitation (a guest arriving) starts the back-off over.
	retryMin, retryMax time.Duration
}

var defaultTiming = timing{
	minInterval:    MinInterval,
	maxInterval:    MaxInterval,
	initialAdverts: 3,
	maxInitial:     16 * time.Second,
	minDelay:       3 * time.Second,
	maxRADelay:     500 * time.Millisecond,
	sourceGap:      time.Second,
	unicastRate:    10,
	unicastBurst:   20,
	maxSources:     256,
	retryMin:       250 * time.Millisecond,
	retryMax:       30 * time.Second,
}

// verdict is what became of a solicitation.
type verdict int

const (
	// scheduled: a unicast answer is scheduled for it.
	scheduled verdict = iota
	// coalesced: an answer already scheduled (unicast to the same source,
	// or the next multicast advertisement) covers it.
	coalesced
	// rateLimited: dropped.
	rateLimited
)

// unicast is one due unicast answer.
type unicast struct {
	to      netip.Addr
	answers int // solicitations it answers
}

type pendingAnswer struct {
	at      time.Time
	answers int
}

// scheduler decides when advertisements go out. It is pure: it reads no
// clock and draws randomness from rnd, so tests can drive it step by step.
//
// Unsolicited advertisements are multicast to all nodes at random
// intervals in [minInterval, maxInterval], the first initialAdverts gaps
// capped at maxInitial (§6.2.4). Solicitations from an address are answered
// by unicast after a random delay of up to maxRADelay (§6.2.6 allows
// unicast; RFC 7772 prefers it, since a multicast wakes every guest);
// solicitations from the unspecified address by the multicast
// advertisement, brought forward by the same rules. Multicast
// advertisements are never less than minDelay apart.
type scheduler struct {
	t   timing
	rnd func(max time.Duration) time.Duration // uniform in [0, max]

	initialLeft int
	nextMC      time.Time // zero: none scheduled (one is being sent)
	lastMC      time.Time // zero: none sent yet
	mcAnswers   int       // solicitations the next multicast answers
	retry       time.Duration

	pending  map[netip.Addr]*pendingAnswer
	answered map[netip.Addr]time.Time // last unicast answer per address
	tokens   float64
	tokensAt time.Time
}

// newScheduler starts advertising at now: the first multicast
// advertisement is due at once.
func newScheduler(now time.Time, t timing, rnd func(time.Duration) time.Duration) *scheduler {
	return &scheduler{
		t:           t,
		rnd:         rnd,
		initialLeft: t.initialAdverts,
		nextMC:      now,
		retry:       t.retryMin,
		pending:     map[netip.Addr]*pendingAnswer{},
		answered:    map[netip.Addr]time.Time{},
		tokens:      t.unicastBurst,
		tokensAt:    now,
	}
}

// earliestMC is the soonest a multicast advertisement may go after now.
func (s *scheduler) earliestMC(now time.Time) time.Time {
	if !s.lastMC.IsZero() && now.Sub(s.lastMC) < s.t.minDelay {
		return s.lastMC.Add(s.t.minDelay)
	}
	return now
}

// bringForward moves the next multicast advertisement to at if that is
// sooner.
func (s *scheduler) bringForward(at time.Time) {
	if s.nextMC.IsZero() || at.Before(s.nextMC) {
		s.nextMC = at
	}
}

// solicit records a valid solicitation from src (unspecified or invalid:
// the unspecified address) received at now.
func (s *scheduler) solicit(now time.Time, src netip.Addr) verdict {
	s.retry = s.t.retryMin
	delay := s.rnd(s.t.maxRADelay)
	if !src.IsValid() || src.IsUnspecified() {
		// §6.2.6: a random delay, after MIN_DELAY_BETWEEN_RAS since the
		// last multicast; an advertisement already due sooner answers it.
		at := now.Add(delay)
		if e := s.earliestMC(now); e.After(now) {
			at = e.Add(delay)
		}
		s.bringForward(at)
		s.mcAnswers++
		return coalesced
	}
	src = src.WithZone("")
	if p, ok := s.pending[src]; ok {
		p.answers++
		return coalesced
	}
	if !s.nextMC.IsZero() && !s.nextMC.After(now.Add(delay)) {
		s.mcAnswers++
		return coalesced
	}
	if last, ok := s.answered[src]; ok && now.Sub(last) < s.t.sourceGap {
		return rateLimited
	}
	s.refill(now)
	if s.tokens < 1 {
		return rateLimited
	}
	if len(s.pending)+len(s.answered) >= s.t.maxSources {
		s.forget(now)
		if len(s.pending)+len(s.answered) >= s.t.maxSources {
			return rateLimited
		}
	}
	s.tokens--
	s.pending[src] = &pendingAnswer{at: now.Add(delay), answers: 1}
	return scheduled
}

func (s *scheduler) refill(now time.Time) {
	if el := now.Sub(s.tokensAt); el > 0 {
		s.tokens = min(s.t.unicastBurst, s.tokens+el.Seconds()*s.t.unicastRate)
		s.tokensAt = now
	}
}

// forget drops the answered addresses whose sourceGap is over.
func (s *scheduler) forget(now time.Time) {
	for a, at := range s.answered {
		if now.Sub(at) >= s.t.sourceGap {
			delete(s.answered, a)
		}
	}
}

// changed restarts the initial fast schedule because the advertisement
// changed (§6.2.4 allows treating a change like a new interface), with the
// first one as soon as minDelay allows.
func (s *scheduler) changed(now time.Time) {
	s.initialLeft = s.t.initialAdverts
	s.bringForward(s.earliestMC(now))
}

// next is when something is due; zero when nothing is scheduled.
func (s *scheduler) next() time.Time {
	n := s.nextMC
	for _, p := range s.pending {
		if n.IsZero() || p.at.Before(n) {
			n = p.at
		}
	}
	return n
}

// due takes what is due at now: whether a multicast advertisement is (and
// how many solicitations it answers) and the unicast answers. After a
// multicast, the caller reports sent or unready.
func (s *scheduler) due(now time.Time) (multicast bool, mcAnswers int, uc []unicast) {
	for a, p := range s.pending {
		if !p.at.After(now) {
			uc = append(uc, unicast{to: a, answers: p.answers})
			delete(s.pending, a)
			s.answered[a] = now
		}
	}
	if !s.nextMC.IsZero() && !s.nextMC.After(now) {
		multicast, mcAnswers = true, s.mcAnswers
		s.nextMC, s.mcAnswers = time.Time{}, 0
	}
	return multicast, mcAnswers, uc
}

// sent records a multicast advertisement sent at now and schedules the
// next unsolicited one.
func (s *scheduler) sent(now time.Time) {
	s.lastMC = now
	s.retry = s.t.retryMin
	// A solicitation from the unspecified address handled while this one
	// was being sent was scheduled against the previous one.
	if !s.nextMC.IsZero() && s.nextMC.Before(now.Add(s.t.minDelay)) {
		s.nextMC = now.Add(s.t.minDelay)
	}
	gap := s.t.minInterval + s.rnd(s.t.maxInterval-s.t.minInterval)
	if s.initialLeft > 0 {
		s.initialLeft--
		gap = min(gap, s.t.maxInitial)
	}
	s.bringForward(now.Add(gap))
}

// unready records that nothing could be sent at now because the bridge
// has no usable link-local address: the multicast advertisement, which
// now also answers the unicast solicitations uc, is retried with
// back-off.
func (s *scheduler) unready(now time.Time, answers int) {
	s.mcAnswers += answers
	s.bringForward(now.Add(s.retry))
	s.retry = min(2*s.retry, s.t.retryMax)
}
