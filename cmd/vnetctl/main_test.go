package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestNetValidate(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "good.xml")
	bad := filepath.Join(dir, "bad.xml")
	os.WriteFile(good, []byte("<network><name>ok</name><forward/><ip address='192.168.9.1' prefix='24'/></network>"), 0o600)
	opts := filepath.Join(dir, "opts.xml")
	os.WriteFile(opts, []byte("<network xmlns:dnsmasq='http://libvirt.org/schemas/network/dnsmasq/1.0'><name>o</name><dnsmasq:options><dnsmasq:option value='foo=bar'/></dnsmasq:options></network>"), 0o600)
	os.WriteFile(bad, []byte("<network><name>a/b</name><forward/><ip address='192.168.9.1' prefix='24'><dhcp><range start='10.0.0.1' end='10.0.0.2'/></dhcp></ip></network>"), 0o600)

	tests := []struct {
		args      []string
		status    int
		out, errs []string
	}{
		{[]string{"net-validate", good}, 0, []string{"good.xml: valid"}, nil},
		{[]string{"net-validate", good, bad}, 1, []string{"good.xml: valid"},
			[]string{"bad.xml: invalid (2 problems)", "network/name", "network/ip[1]/dhcp/range[1]"}},
		{[]string{"net-validate", opts}, 0, []string{"opts.xml: valid"}, []string{"will refuse to start", "foo=bar"}},
		{[]string{"net-validate", filepath.Join(dir, "missing.xml")}, 1, nil, []string{"no such file"}},
		{[]string{"net-validate"}, 2, nil, []string{"usage"}},
		{[]string{"net-bogus"}, 2, nil, []string{"unknown command"}},
	}
	for _, tc := range tests {
		var stdout, stderr bytes.Buffer
		if got := run(tc.args, &stdout, &stderr); got != tc.status {
			t.Errorf("%v: status %d, want %d (stderr %s)", tc.args, got, tc.status, stderr.String())
		}
		for _, want := range tc.out {
			if !strings.Contains(stdout.String(), want) {
				t.Errorf("%v: stdout %q lacks %q", tc.args, stdout.String(), want)
			}
		}
		for _, want := range tc.errs {
			if !strings.Contains(stderr.String(), want) {
				t.Errorf("%v: stderr %q lacks %q", tc.args, stderr.String(), want)
			}
		}
	}
}
