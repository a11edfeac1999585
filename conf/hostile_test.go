package conf

import (
	"bytes"
	"fmt"
	"strings"
	"testing"
	"time"
)

// Hostile documents (issue 10): each is refused with an error that says
// which limit or rule it broke, quickly and in a message of bounded size.

// hostileDocs are the documents every parser entry must refuse; want is a
// phrase of the error.
func hostileDocs() map[string]struct{ doc, want string } {
	nested := func(n int) string {
		return "<network><name>x</name><metadata><m:a xmlns:m='urn:m'>" + strings.Repeat("<m:a>", n-1) + strings.Repeat("</m:a>", n) + "</metadata></network>"
	}
	return map[string]struct{ doc, want string }{
		"billion laughs": {`<?xml version="1.0"?>
<!DOCTYPE network [
 <!ENTITY lol "lol">
 <!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
 <!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
 <!ENTITY lol9 "&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;">
]>
<network><name>&lol9;</name></network>`, "line 2: DTDs and <!...> declarations are not accepted"},
		"external entity": {`<!DOCTYPE network [<!ENTITY xxe SYSTEM "file:///etc/passwd">]><network><name>&xxe;</name></network>`,
			"DTDs and <!...> declarations are not accepted"},
		"external DTD":            {`<!DOCTYPE network SYSTEM "http://example.com/evil.dtd"><network><name>x</name></network>`, "DTDs"},
		"entity without a DTD":    {`<network><name>&lol;</name></network>`, "invalid character entity &lol;"},
		"nested 100000 deep":      {nested(100000), "elements nested deeper than 32"},
		"nested one too deep":     {nested(MaxDepth - 1), "network/metadata/" + strings.Repeat("m:a/", MaxDepth-3) + "m:a: elements nested deeper than 32"},
		"200001 elements":         {"<network><name>x</name><metadata><m>" + strings.Repeat("<a/>", maxElements) + "</m></metadata></network>", "more than 200000 elements"},
		"invalid UTF-8 in text":   {"<network><name>a\xffb</name></network>", "malformed XML: invalid UTF-8"},
		"invalid UTF-8 attribute": {"<network><name>x</name><bridge name='\xc3\x28'/></network>", "malformed XML: invalid UTF-8"},
		"invalid UTF-8 name":      {"<network><\xff/></network>", "malformed XML: invalid XML name"},
		"UTF-8 surrogate":         {"<network><name>x</name><description>\xed\xa0\x80</description></network>", "invalid UTF-8"},
		"UTF-16":                  {"\xff\xfe<\x00n\x00e\x00t\x00w\x00o\x00r\x00k\x00/\x00>\x00", "invalid UTF-8"},
		"other encoding":          {"<?xml version='1.0' encoding='ISO-8859-1'?><network><name>x</name></network>", `encoding "ISO-8859-1"`},
		"NUL byte":                {"<network><name>a\x00b</name></network>", "illegal character code U+0000"},
		"NUL reference":           {"<network><name>a&#0;b</name></network>", "illegal character code U+0000"},
		"truncated":               {"<network><name>x</name><ip address='10.0.0.1'", "unexpected EOF"},
		"unclosed":                {"<network><name>x</name>", "unexpected end of input inside <network>"},
		"two roots":               {"<network><name>x</name></network><network><name>y</name></network>", "content after the root element"},
		"text after the root":     {"<network><name>x</name></network>trailing", "text outside the root element"},
		"processing instruction":  {"<network><name>x</name><metadata><?php system('id') ?></metadata></network>", "processing instruction <?php?> is not accepted"},
		"undeclared prefix":       {"<network><name>x</name><a:b/></network>", `undeclared namespace prefix "a"`},
		"empty":                   {"", "no <network> element"},
		"other root":              {"<domain/>", "root element is <domain>, expected <network>"},
		"name with a slash":       {"<network><name>../../etc/x</name></network>", `network/name (line 1): name "../../etc/x" cannot contain '/'`},
		"slash in CDATA":          {"<network><name><![CDATA[a/b]]></name></network>", "cannot contain '/'"},
	}
}

func TestHostileXML(t *testing.T) {
	for name, tc := range hostileDocs() {
		t.Run(name, func(t *testing.T) {
			if raceDetector && len(tc.doc) > 100000 {
				t.Skip("seconds with the race detector, which finds nothing in one goroutine")
			}
			began := time.Now()
			n, err := Parse([]byte(tc.doc))
			if err == nil {
				t.Fatalf("accepted: %+v", n)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %q, want it to contain %q", err, tc.want)
			}
			if len(err.Error()) > 1000 {
				t.Errorf("error of %d bytes", len(err.Error()))
			}
			if took := time.Since(began); took > 10*time.Second {
				t.Errorf("took %v", took)
			}
			// <networkport> documents go through the same reader.
			if strings.Contains(tc.doc, "network>") {
				port := strings.ReplaceAll(tc.doc, "network>", "networkport>")
				if _, err := ParsePort([]byte(port)); err == nil {
					t.Errorf("ParsePort accepted it")
				}
			}
		})
	}
}

func TestDepthLimit(t *testing.T) {
	// <network><metadata> and 30 levels below: MaxDepth in all.
	doc := "<network><name>x</name><metadata><m:a xmlns:m='urn:m'>" + strings.Repeat("<m:a>", MaxDepth-3) + strings.Repeat("</m:a>", MaxDepth-2) + "</metadata></network>"
	if _, err := Parse([]byte(doc)); err != nil {
		t.Fatalf("%d levels: %v", MaxDepth, err)
	}
}

func TestOversizedInput(t *testing.T) {
	// The pages of an untouched allocation are not even mapped: 100 MB
	// costs nothing until read, and the size is checked first.
	huge := make([]byte, 100<<20)
	for _, size := range []int{MaxInputSize + 1, len(huge)} {
		want := fmt.Sprintf("input is %d bytes, more than the %d accepted", size, MaxInputSize)
		if _, err := Parse(huge[:size]); err == nil || err.Error() != want {
			t.Errorf("Parse of %d bytes: %v, want %q", size, err, want)
		}
		if _, err := ParsePort(huge[:size]); err == nil || err.Error() != want {
			t.Errorf("ParsePort of %d bytes: %v, want %q", size, err, want)
		}
	}
}

// TestProblemsBounded: a definition with ten thousand bad elements
// reports the first fifty and how many more, not megabytes.
func TestProblemsBounded(t *testing.T) {
	var b bytes.Buffer
	b.WriteString("<network><name>x</name>")
	const bad = 10000
	for range bad {
		b.WriteString("<ip address='x'/>")
	}
	b.WriteString("</network>")
	_, err := Parse(b.Bytes())
	list := Problems(err)
	if len(list) != maxProblems+1 {
		t.Fatalf("%d problems listed, want %d", len(list), maxProblems+1)
	}
	if got, want := list[0].Error(), `network/ip[1] (line 1): attribute address: "x" is not an IP address`; got != want {
		t.Errorf("first problem %q, want %q", got, want)
	}
	if got, want := list[maxProblems].Error(), fmt.Sprintf("and %d more problems", bad-maxProblems); got != want {
		t.Errorf("last line %q, want %q", got, want)
	}
	if len(err.Error()) > 10000 {
		t.Errorf("error of %d bytes", len(err.Error()))
	}
	// So does an update snippet.
	n := mustParse(t, "<network><name>x</name><ip address='10.0.0.1' prefix='24'><dhcp/></ip></network>")
	var attrs strings.Builder
	for i := range 1000 {
		fmt.Fprintf(&attrs, " bogus%d='1'", i)
	}
	err = n.Update(UpdateAddLast, SectionIPDHCPHost, -1, []byte("<host"+attrs.String()+" mac='52:54:00:00:00:01' ip='10.0.0.5'/>"))
	if list := Problems(err); len(list) != maxProblems+1 || !strings.Contains(list[maxProblems].Error(), "and 950 more problems") {
		t.Errorf("update with 1000 unknown attributes: %d problems, %v", len(list), err)
	}
}

// TestManyHosts: a hundred thousand <host> elements fit the input limit
// and are handled in linear time; with MAC addresses they do not fit, and
// the error says so.
func TestManyHosts(t *testing.T) {
	doc := func(n int, host func(i int) string) []byte {
		var b bytes.Buffer
		b.WriteString("<network><name>big</name><forward mode='nat'/><ip address='10.0.0.1' prefix='8'><dhcp><range start='10.200.0.1' end='10.200.0.100'/>")
		for i := range n {
			b.WriteString(host(i))
		}
		b.WriteString("</dhcp></ip></network>")
		return b.Bytes()
	}
	hosts := 100000
	if raceDetector {
		hosts = 10000
	}
	data := doc(hosts, func(i int) string {
		return fmt.Sprintf("<host name='h%d' ip='10.%d.%d.%d'/>", i, 1+i>>16, i>>8&255, i&255)
	})
	began := time.Now()
	n, err := Parse(data)
	if err != nil {
		t.Fatal(err)
	}
	if err := n.Validate(); err != nil {
		t.Fatal(err)
	}
	if got := len(n.IPs[0].DHCP.Hosts); got != hosts {
		t.Fatalf("%d hosts", got)
	}
	out := n.Format(0)
	// Quadratic work (a duplicate check comparing every pair) would take
	// minutes; parsing, validating and formatting take a fraction of a
	// second (a few with the race detector).
	if took := time.Since(began); took > 20*time.Second {
		t.Errorf("took %v", took)
	}
	if last := fmt.Sprintf("<host name='h%d' ", hosts-1); !bytes.Contains(out, []byte(last)) {
		t.Error("the last host is not in the formatted definition")
	}

	withMAC := doc(100000, func(i int) string {
		return fmt.Sprintf("<host mac='52:54:00:%02x:%02x:%02x' ip='10.%d.%d.%d'/>", i>>16, i>>8&255, i&255, 1+i>>16, i>>8&255, i&255)
	})
	if _, err := Parse(withMAC); err == nil || !strings.Contains(err.Error(), fmt.Sprintf("more than the %d accepted", MaxInputSize)) {
		t.Errorf("%d bytes of hosts: %v", len(withMAC), err)
	}
}

func TestByteOrderMark(t *testing.T) {
	n, err := Parse([]byte("\xef\xbb\xbf<?xml version='1.0' encoding='UTF-8'?>\n<network><name>bom</name></network>"))
	if err != nil || n.Name != "bom" {
		t.Fatalf("%v %+v", err, n)
	}
	if _, err := Parse([]byte("\xef\xbb\xbf\xef\xbb\xbf<network><name>bom</name></network>")); err == nil {
		t.Error("two byte order marks accepted")
	}
}
