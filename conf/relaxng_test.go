package conf

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// relaxNGResult is xmllint's verdict on one file: valid, or the messages it
// gave.
type relaxNGResult struct {
	valid    bool
	messages []string
}

// xmllintRelaxNG validates files against schema in one xmllint run and
// returns a verdict for each file.
func xmllintRelaxNG(t *testing.T, schema string, files []string) map[string]*relaxNGResult {
	t.Helper()
	xmllint, err := exec.LookPath("xmllint")
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("xmllint not found (make deps installs libxml2-utils): %v", err)
		}
		t.Skipf("xmllint not found (make deps installs libxml2-utils); skipping")
	}
	if _, err := os.Stat(schema); err != nil {
		t.Fatalf("schema: %v", err)
	}
	args := append([]string{"--noout", "--relaxng", schema}, files...)
	out, err := exec.Command(xmllint, args...).CombinedOutput()
	var exitErr *exec.ExitError
	if err != nil && !errors.As(err, &exitErr) {
		t.Fatalf("xmllint: %v\n%s", err, out)
	}
	results := map[string]*relaxNGResult{}
	for _, f := range files {
		results[f] = &relaxNGResult{}
	}
	verdicts := 0
	for _, line := range strings.Split(string(out), "\n") {
		if f, ok := strings.CutSuffix(line, " validates"); ok && results[f] != nil {
			results[f].valid = true
			verdicts++
			continue
		}
		if f, ok := strings.CutSuffix(line, " fails to validate"); ok && results[f] != nil {
			verdicts++
			continue
		}
		// Error lines start with the file name: "file.xml:3: element x: ...".
		for f, r := range results {
			if strings.HasPrefix(line, f+":") {
				r.messages = append(r.messages, strings.TrimPrefix(line, f+":"))
				break
			}
		}
	}
	if verdicts != len(files) {
		t.Fatalf("xmllint gave %d verdicts for %d files (%v):\n%s", verdicts, len(files), err, out)
	}
	return results
}

// TestConformanceRelaxNG checks that what we format is valid against
// libvirt's own schemas: every network of the networkxml2xml list against
// network.rng, every port of virnetworkportxml2xmldata against
// networkport.rng.
func TestConformanceRelaxNG(t *testing.T) {
	dir := libvirtTestdata(t)
	tmp := t.TempDir()
	schemas := filepath.Join(dir, "src", "conf", "schemas")

	var files, names []string
	total := 0
	for _, tc := range networkxml2xmlCases {
		if tc.parseFail {
			continue
		}
		total++
		in, err := os.ReadFile(filepath.Join(dir, "tests", "networkxml2xmlin", tc.name+".xml"))
		if err != nil {
			t.Fatal(err)
		}
		n, err := Parse(in)
		if err != nil {
			t.Errorf("%s: parse: %v", tc.name, err)
			continue
		}
		f := filepath.Join(tmp, tc.name+".xml")
		if err := os.WriteFile(f, n.Format(tc.flags), 0o644); err != nil {
			t.Fatal(err)
		}
		files = append(files, f)
		names = append(names, tc.name)
	}
	ok := 0
	if len(files) > 0 {
		results := xmllintRelaxNG(t, filepath.Join(schemas, "network.rng"), files)
		for i, f := range files {
			if r := results[f]; r.valid {
				ok++
			} else {
				t.Errorf("network %s: our output fails network.rng:\n%s", names[i], strings.Join(r.messages, "\n"))
			}
		}
	}
	reportLine(t, "relaxng: %d/%d valid", ok, total)

	portDir := filepath.Join(tmp, "networkport")
	if err := os.Mkdir(portDir, 0o755); err != nil {
		t.Fatal(err)
	}
	files = files[:0]
	var variants []string
	ports := portCorpus(t, dir)
	for _, src := range ports {
		in, err := os.ReadFile(src)
		if err != nil {
			t.Fatal(err)
		}
		p, err := ParsePort(in)
		if err != nil {
			t.Errorf("%s: parse: %v", filepath.Base(src), err)
			continue
		}
		f := filepath.Join(portDir, filepath.Base(src))
		if err := os.WriteFile(f, p.Format(), 0o644); err != nil {
			t.Fatal(err)
		}
		files = append(files, f)
	}
	// Our own variants (driver model, other plug types and modes) too.
	for i, v := range portVariants {
		f := filepath.Join(tmp, fmt.Sprintf("variant-%d.xml", i+1))
		if err := os.WriteFile(f, []byte(strings.Replace(portDoc, "PLUG", v, 1)), 0o644); err != nil {
			t.Fatal(err)
		}
		variants = append(variants, f)
	}
	// A port without <owner> must fail: proof that the harness sees failures.
	invalid := filepath.Join(tmp, "invalid-port.xml")
	if err := os.WriteFile(invalid, []byte("<networkport><uuid>5d744f21-ba4a-4d6e-bdb2-30a35ff3207d</uuid></networkport>\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	ok = 0
	if len(files) > 0 {
		all := append(append([]string{invalid}, variants...), files...)
		results := xmllintRelaxNG(t, filepath.Join(schemas, "networkport.rng"), all)
		if results[invalid].valid {
			t.Errorf("xmllint accepted a port without <owner>: the validation harness is broken")
		}
		for _, f := range variants {
			if r := results[f]; !r.valid {
				t.Errorf("port variant %s fails networkport.rng:\n%s", filepath.Base(f), strings.Join(r.messages, "\n"))
			}
		}
		for _, f := range files {
			if r := results[f]; r.valid {
				ok++
			} else {
				t.Errorf("networkport %s: our output fails networkport.rng:\n%s", filepath.Base(f), strings.Join(r.messages, "\n"))
			}
		}
	}
	reportLine(t, "relaxng networkport: %d/%d valid", ok, len(ports))
}
