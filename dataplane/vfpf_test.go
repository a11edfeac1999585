package dataplane

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/vnetd/vnetd/conf"
)

// fakeVFTree lays out a PF 0000:03:00.0 (eth2) with VFs 0000:03:00.1 (virtfn0)
// and 0000:03:00.2 (virtfn1) the way sysfs shows them.
func fakeVFTree(t *testing.T) string {
	t.Helper()
	root := t.TempDir()
	dev := filepath.Join(root, "bus", "pci", "devices")
	for _, d := range []string{"0000:03:00.0/net/eth2", "0000:03:00.1/net/eth2v0", "0000:03:00.2"} {
		if err := os.MkdirAll(filepath.Join(dev, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	links := map[string]string{
		"0000:03:00.0/virtfn0": "../0000:03:00.1",
		"0000:03:00.0/virtfn1": "../0000:03:00.2",
		"0000:03:00.1/physfn":  "../0000:03:00.0",
		"0000:03:00.2/physfn":  "../0000:03:00.0",
	}
	for l, target := range links {
		if err := os.Symlink(target, filepath.Join(dev, l)); err != nil {
			t.Fatal(err)
		}
	}
	return root
}

func TestPFOfVF(t *testing.T) {
	root := fakeVFTree(t)
	tests := []struct {
		pci     conf.PCIAddress
		pf      string
		index   int
		wantErr string
	}{
		{pci: conf.PCIAddress{Bus: 3, Function: 1}, pf: "eth2", index: 0},
		{pci: conf.PCIAddress{Bus: 3, Function: 2}, pf: "eth2", index: 1},
		{pci: conf.PCIAddress{Bus: 3, Function: 0}, wantErr: "not an SR-IOV virtual function"},
		{pci: conf.PCIAddress{Bus: 4}, wantErr: "not an SR-IOV virtual function"},
	}
	for _, tc := range tests {
		pf, idx, err := PFOfVF(root, tc.pci)
		if tc.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("%s: got %v, want error %q", tc.pci, err, tc.wantErr)
			}
			continue
		}
		if err != nil || pf != tc.pf || idx != tc.index {
			t.Errorf("%s: got %s %d %v, want %s %d", tc.pci, pf, idx, err, tc.pf, tc.index)
		}
	}
}
