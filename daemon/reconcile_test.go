package daemon

import (
	"fmt"
	"testing"
)

// TestReconcileRotatesBatches: with more networks than one batch, a flushed
// ruleset is restored over consecutive Reconcile calls, each checking at
// most reconcileBatch networks, and every network gets its turn.
func TestReconcileRotatesBatches(t *testing.T) {
	e := newEnv(t)
	const n = 2*reconcileBatch + 5
	for i := range n {
		xml := fmt.Sprintf(`<network><name>r%d</name><forward mode='nat'/><bridge name='vr%d'/><ip address='10.77.%d.1' prefix='24'/></network>`, i, i, i)
		if _, err := e.m.Create([]byte(xml)); err != nil {
			t.Fatal(err)
		}
	}
	e.fw.mu.Lock()
	clear(e.fw.applied) // nft flush ruleset
	e.fw.mu.Unlock()
	total := 0
	for range 3 {
		got := e.m.Reconcile()
		if got > reconcileBatch {
			t.Fatalf("one Reconcile restored %d networks, batch is %d", got, reconcileBatch)
		}
		total += got
	}
	if total != n || len(e.fw.applied) != n {
		t.Fatalf("restored %d of %d (applied %d)", total, n, len(e.fw.applied))
	}
	if got := e.m.Reconcile(); got != 0 {
		t.Fatalf("restored %d networks that were intact", got)
	}
}
