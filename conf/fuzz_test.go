package conf

import (
	"bytes"
	"os"
	"path/filepath"
	"reflect"
	"testing"
)

// FuzzParse: any input either fails to parse with an error or parses to a
// model whose canonical form is a fixed point: parse(format(n)) formats the
// same and gives the same model again. Nothing panics, Validate included.
func FuzzParse(f *testing.F) {
	for _, file := range fuzzSeeds(f) {
		data, err := os.ReadFile(file)
		if err == nil {
			f.Add(data)
		}
	}
	f.Add([]byte("<network><name>x</name></network>"))
	f.Add([]byte("<network><name>x</name><metadata><a:b xmlns:a='urn:a'>t<c/></a:b></metadata></network>"))
	f.Fuzz(func(t *testing.T, data []byte) {
		n, err := Parse(data)
		if err != nil {
			return
		}
		_ = n.Validate()
		_ = n.CheckDnsmasqOptions()
		out := n.Format(0)
		n2, err := Parse(out)
		if err != nil {
			t.Fatalf("formatted output does not parse: %v\n%s", err, out)
		}
		out2 := n2.Format(0)
		if !bytes.Equal(out, out2) {
			t.Fatalf("format is not a fixed point:\n%s\n---\n%s", out, out2)
		}
		n3, err := Parse(out2)
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(n2, n3) {
			t.Fatalf("parse(format(n)) gives a different model:\n%#v\n%#v", n2, n3)
		}
	})
}

// fuzzSeeds are libvirt's corpus inputs (when present) and our own testdata.
func fuzzSeeds(f *testing.F) []string {
	var files []string
	dir := os.Getenv("VNETD_LIBVIRT_TESTDATA")
	if dir == "" {
		dir = filepath.Join("..", "..", "shared", "conformance", "libvirt")
	}
	for _, pattern := range []string{
		filepath.Join(dir, "tests", "networkxml2xmlin", "*.xml"),
		filepath.Join(dir, "tests", "networkxml2confdata", "*.xml"),
		filepath.Join(dir, "tests", "networkxml2firewalldata", "*.xml"),
		filepath.Join("testdata", "*.xml"),
		filepath.Join("testdata", "invalid", "*.xml"),
	} {
		m, _ := filepath.Glob(pattern)
		files = append(files, m...)
	}
	return files
}

func BenchmarkParseFormat(b *testing.B) {
	data, err := os.ReadFile(filepath.Join("testdata", "bench-network.xml"))
	if err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	for b.Loop() {
		n, err := Parse(data)
		if err != nil {
			b.Fatal(err)
		}
		_ = n.Format(0)
	}
}
