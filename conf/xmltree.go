package conf

import (
	"bytes"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"strings"
)

// Limits on what Parse accepts at all; libvirt networks are a few kilobytes.
const (
	MaxInputSize = 4 << 20
	MaxDepth     = 32
	maxElements  = 200000
)

// node is one element of the document tree the model is decoded from. The
// tree keeps prefixes as written (for <metadata>) and resolved namespaces
// (for <dnsmasq:options>), plus the line and the element path for errors.
type node struct {
	name     RawName
	space    string // resolved namespace URI
	attrs    []RawAttr
	items    []nodeItem // children and text in document order (for metadata)
	children []*node
	text     strings.Builder
	line     int
	path     string
	parent   *node
	scope    map[string]string // prefix -> URI declared on this element
	seen     map[RawName]int   // repeatable children so far, for path indexes
}

// nodeItem is a child element or a run of text.
type nodeItem struct {
	child *node
	text  string
}

// repeatable elements get an index in error paths: network/ip[2]/dhcp/range[1].
var repeatable = map[string]bool{
	"ip": true, "range": true, "host": true, "route": true, "portgroup": true,
	"interface": true, "address": true, "forwarder": true, "txt": true, "srv": true,
	"hostname": true, "tag": true, "option": true,
}

func (n *node) lookupNS(prefix string) (string, bool) {
	for m := n; m != nil; m = m.parent {
		if uri, ok := m.scope[prefix]; ok {
			return uri, true
		}
	}
	if prefix == "xml" {
		return "http://www.w3.org/XML/1998/namespace", true
	}
	return "", prefix == ""
}

// attr returns an attribute without a prefix.
func (n *node) attr(name string) (string, bool) {
	for _, a := range n.attrs {
		if a.Name.Prefix == "" && a.Name.Local == name {
			return a.Value, true
		}
	}
	return "", false
}

func (n *node) textContent() string { return n.text.String() }

func isNSDecl(a RawAttr) bool {
	return a.Name.Prefix == "xmlns" || (a.Name.Prefix == "" && a.Name.Local == "xmlns")
}

// readTree decodes data into a tree, refusing DTDs, oversize and overdeep
// input. Entities other than XML's five are errors (encoding/xml is strict).
func readTree(data []byte, root string) (*node, error) {
	if len(data) > MaxInputSize {
		return nil, fmt.Errorf("input is %d bytes, more than the %d accepted", len(data), MaxInputSize)
	}
	// A UTF-8 byte order mark, as some editors write, is not text outside
	// the root element (libxml2 skips it too).
	data = bytes.TrimPrefix(data, []byte("\xef\xbb\xbf"))
	d := xml.NewDecoder(bytes.NewReader(data))
	d.Strict = true
	var (
		top      *node
		cur      *node
		elements int
		done     bool
	)
	for {
		line, _ := d.InputPos()
		tok, err := d.RawToken()
		if err == io.EOF {
			break
		}
		if err != nil {
			var se *xml.SyntaxError
			if errors.As(err, &se) {
				return nil, fmt.Errorf("line %d: malformed XML: %s", se.Line, se.Msg)
			}
			return nil, fmt.Errorf("line %d: malformed XML: %w", line, err)
		}
		switch t := tok.(type) {
		case xml.StartElement:
			if done {
				return nil, fmt.Errorf("line %d: content after the root element", line)
			}
			elements++
			if elements > maxElements {
				return nil, fmt.Errorf("line %d: more than %d elements", line, maxElements)
			}
			n := &node{name: RawName{t.Name.Space, t.Name.Local}, parent: cur, line: line}
			for _, a := range t.Attr {
				ra := RawAttr{Name: RawName{a.Name.Space, a.Name.Local}, Value: a.Value}
				n.attrs = append(n.attrs, ra)
				if isNSDecl(ra) {
					if n.scope == nil {
						n.scope = map[string]string{}
					}
					prefix := ra.Name.Local
					if ra.Name.Prefix == "" {
						prefix = ""
					}
					n.scope[prefix] = ra.Value
				}
			}
			uri, ok := n.lookupNS(n.name.Prefix)
			if !ok {
				return nil, fmt.Errorf("line %d: element <%s:%s> uses undeclared namespace prefix %q", line, n.name.Prefix, n.name.Local, n.name.Prefix)
			}
			n.space = uri
			if cur == nil {
				if top != nil {
					return nil, fmt.Errorf("line %d: more than one root element", line)
				}
				if n.name.Local != root || n.name.Prefix != "" || n.space != "" {
					return nil, fmt.Errorf("line %d: root element is <%s>, expected <%s>", line, qname(n.name), root)
				}
				n.path = root
				top = n
			} else {
				depth := 1
				for m := cur; m != nil; m = m.parent {
					depth++
				}
				if depth > MaxDepth {
					return nil, fmt.Errorf("line %d: %s: elements nested deeper than %d", line, cur.path, MaxDepth)
				}
				n.path = cur.path + "/" + qname(n.name)
				if repeatable[n.name.Local] {
					if cur.seen == nil {
						cur.seen = map[RawName]int{}
					}
					cur.seen[n.name]++
					n.path = fmt.Sprintf("%s[%d]", n.path, cur.seen[n.name])
				}
				cur.children = append(cur.children, n)
				cur.items = append(cur.items, nodeItem{child: n})
			}
			cur = n
		case xml.EndElement:
			if cur == nil || t.Name.Space != cur.name.Prefix || t.Name.Local != cur.name.Local {
				return nil, fmt.Errorf("line %d: unexpected end element </%s>", line, qname(RawName{t.Name.Space, t.Name.Local}))
			}
			if cur.parent == nil {
				done = true
			}
			cur = cur.parent
		case xml.CharData:
			if cur == nil {
				if len(bytes.TrimSpace(t)) != 0 {
					return nil, fmt.Errorf("line %d: text outside the root element", line)
				}
				continue
			}
			cur.text.Write(t)
			cur.items = append(cur.items, nodeItem{text: string(t)})
		case xml.Directive:
			return nil, fmt.Errorf("line %d: DTDs and <!...> declarations are not accepted", line)
		case xml.ProcInst:
			if cur != nil || top != nil {
				return nil, fmt.Errorf("line %d: processing instruction <?%s?> is not accepted", line, t.Target)
			}
		case xml.Comment:
		}
	}
	if top == nil {
		return nil, fmt.Errorf("no <%s> element in input", root)
	}
	if cur != nil {
		return nil, fmt.Errorf("unexpected end of input inside <%s>", qname(cur.name))
	}
	return top, nil
}

func qname(n RawName) string {
	if n.Prefix == "" {
		return n.Local
	}
	return n.Prefix + ":" + n.Local
}
