package shaping

import (
	"fmt"
	"math/bits"
	"strconv"
	"strings"
)

// MaxClassID is the largest floor class id: the node part of the u32
// filter handle (800::<id>) that classifies into it has 12 bits.
const MaxClassID = 0xfff

// ClassIDs is a network's bitmap of floor class ids on its bridge, as
// libvirt's class_id: ids 0, 1 and 2 are reserved (the root, 1:1 and 1:2),
// floors get the lowest free id from 3 up. The zero value has only the
// reserved ids. The daemon persists it with MarshalText (libvirt's bitmap
// syntax, "0-2,4,7-9") alongside the network's state. Not safe for
// concurrent use.
type ClassIDs struct {
	words []uint64 // bit i set: id i in use; reserved bits are implicit
}

const reservedIDs = classNoFloor + 1 // ids below are reserved

func (c *ClassIDs) has(id uint16) bool {
	if id < reservedIDs {
		return true
	}
	w := int(id / 64)
	return w < len(c.words) && c.words[w]&(1<<(id%64)) != 0
}

func (c *ClassIDs) set(id uint16, on bool) {
	w := int(id / 64)
	for len(c.words) <= w {
		c.words = append(c.words, 0)
	}
	if on {
		c.words[w] |= 1 << (id % 64)
	} else {
		c.words[w] &^= 1 << (id % 64)
	}
}

// InUse reports whether id is reserved or allocated.
func (c *ClassIDs) InUse(id uint16) bool { return c.has(id) }

// Allocate takes the lowest free id (at least 3).
func (c *ClassIDs) Allocate() (uint16, error) {
	for id := uint16(reservedIDs); id <= MaxClassID; id++ {
		if !c.has(id) {
			c.set(id, true)
			return id, nil
		}
	}
	return 0, fmt.Errorf("shaping: all %d floor class ids are in use", MaxClassID-reservedIDs+1)
}

// Reserve marks id as in use, e.g. for a port whose class survived a
// restart of the daemon.
func (c *ClassIDs) Reserve(id uint16) error {
	switch {
	case id < reservedIDs || id > MaxClassID:
		return fmt.Errorf("shaping: floor class id %d out of range %d-%d", id, reservedIDs, MaxClassID)
	case c.has(id):
		return fmt.Errorf("shaping: floor class id %d is already in use", id)
	}
	c.set(id, true)
	return nil
}

// Release frees id; reserved and free ids are left alone.
func (c *ClassIDs) Release(id uint16) {
	if id >= reservedIDs && id <= MaxClassID {
		c.set(id, false)
	}
}

// IDs are the allocated ids (not the reserved ones), ascending.
func (c *ClassIDs) IDs() []uint16 {
	var ids []uint16
	for w, word := range c.words {
		for word != 0 {
			b := bits.TrailingZeros64(word)
			word &^= 1 << b
			if id := uint16(w*64 + b); id >= reservedIDs {
				ids = append(ids, id)
			}
		}
	}
	return ids
}

// String is the bitmap in libvirt's syntax.
func (c ClassIDs) String() string {
	t, _ := c.MarshalText()
	return string(t)
}

// MarshalText writes the ids in use, reserved ones included, as libvirt's
// virBitmapFormat does: ascending ranges "a-b" or single ids, separated by
// commas ("0-2,5").
func (c ClassIDs) MarshalText() ([]byte, error) {
	ids := append([]uint16{0, 1, 2}, c.IDs()...)
	var b strings.Builder
	for i := 0; i < len(ids); {
		j := i
		for j+1 < len(ids) && ids[j+1] == ids[j]+1 {
			j++
		}
		if b.Len() > 0 {
			b.WriteByte(',')
		}
		if j > i {
			fmt.Fprintf(&b, "%d-%d", ids[i], ids[j])
		} else {
			fmt.Fprintf(&b, "%d", ids[i])
		}
		i = j + 1
	}
	return []byte(b.String()), nil
}

// UnmarshalText reads MarshalText's syntax (libvirt's bitmap: ids and
// ranges separated by commas; the reserved ids may be left out). It
// replaces c's contents only when the whole text is valid.
func (c *ClassIDs) UnmarshalText(text []byte) error {
	var n ClassIDs
	s := strings.TrimSpace(string(text))
	if s != "" {
		for _, part := range strings.Split(s, ",") {
			lo, hi, isRange := strings.Cut(strings.TrimSpace(part), "-")
			a, err := parseClassID(lo)
			if err != nil {
				return fmt.Errorf("shaping: class id bitmap %q: %w", s, err)
			}
			b := a
			if isRange {
				if b, err = parseClassID(hi); err != nil {
					return fmt.Errorf("shaping: class id bitmap %q: %w", s, err)
				}
				if b < a {
					return fmt.Errorf("shaping: class id bitmap %q: range %d-%d is reversed", s, a, b)
				}
			}
			for id := a; id <= b; id++ {
				if id >= reservedIDs {
					n.set(id, true)
				}
			}
		}
	}
	*c = n
	return nil
}

func parseClassID(s string) (uint16, error) {
	v, err := strconv.ParseUint(strings.TrimSpace(s), 10, 16)
	if err != nil {
		return 0, fmt.Errorf("bad id %q", s)
	}
	if v > MaxClassID {
		return 0, fmt.Errorf("id %d is over %d", v, MaxClassID)
	}
	return uint16(v), nil
}
