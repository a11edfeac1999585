package shaping

import (
	"slices"
	"strings"
	"testing"
)

func TestClassIDs(t *testing.T) {
	var ids ClassIDs
	if s := ids.String(); s != "0-2" {
		t.Errorf("zero value = %q, want 0-2", s)
	}
	for i, want := range []uint16{3, 4, 5} {
		got, err := ids.Allocate()
		if err != nil || got != want {
			t.Fatalf("Allocate #%d = %d, %v; want %d", i, got, err, want)
		}
	}
	ids.Release(4)
	if s := ids.String(); s != "0-3,5" {
		t.Errorf("after release = %q", s)
	}
	if got, _ := ids.Allocate(); got != 4 {
		t.Errorf("Allocate reuses the lowest free id: got %d", got)
	}
	ids.Release(1) // reserved: ignored
	ids.Release(99)
	if !ids.InUse(1) || !ids.InUse(0) || ids.InUse(99) {
		t.Error("reserved ids must stay in use")
	}
	if err := ids.Reserve(200); err != nil {
		t.Fatal(err)
	}
	if err := ids.Reserve(200); err == nil || !strings.Contains(err.Error(), "already in use") {
		t.Errorf("Reserve twice: %v", err)
	}
	for _, bad := range []uint16{0, 2, MaxClassID + 1} {
		if err := ids.Reserve(bad); err == nil {
			t.Errorf("Reserve(%d) succeeded", bad)
		}
	}
	if got := ids.IDs(); !slices.Equal(got, []uint16{3, 4, 5, 200}) {
		t.Errorf("IDs = %v", got)
	}
	text, err := ids.MarshalText()
	if err != nil || string(text) != "0-5,200" {
		t.Fatalf("MarshalText = %q, %v", text, err)
	}
	var back ClassIDs
	if err := back.UnmarshalText(text); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(back.IDs(), ids.IDs()) {
		t.Errorf("round trip: %v, want %v", back.IDs(), ids.IDs())
	}
}

func TestClassIDsFull(t *testing.T) {
	var ids ClassIDs
	for i := reservedIDs; i <= MaxClassID; i++ {
		if _, err := ids.Allocate(); err != nil {
			t.Fatalf("Allocate %d: %v", i, err)
		}
	}
	if _, err := ids.Allocate(); err == nil {
		t.Fatal("Allocate past MaxClassID succeeded")
	}
	if s := ids.String(); s != "0-4095" {
		t.Errorf("full = %q", s)
	}
}

func TestClassIDsUnmarshal(t *testing.T) {
	for in, want := range map[string]string{
		"":            "0-2",
		"0-2":         "0-2",
		"5":           "0-2,5",
		" 3 , 7-9 ":   "0-3,7-9",
		"0-2,4,6-6":   "0-2,4,6",
		"0-10,9-12,4": "0-12",
	} {
		var ids ClassIDs
		if err := ids.UnmarshalText([]byte(in)); err != nil {
			t.Errorf("UnmarshalText(%q): %v", in, err)
			continue
		}
		if got := ids.String(); got != want {
			t.Errorf("UnmarshalText(%q) = %q, want %q", in, got, want)
		}
	}
	for _, bad := range []string{"x", "3-", "-3", "9-4", "4096", "1,,2", "70000"} {
		ids := ClassIDs{}
		ids.Allocate()
		if err := ids.UnmarshalText([]byte(bad)); err == nil {
			t.Errorf("UnmarshalText(%q) succeeded: %s", bad, ids)
		} else if ids.String() != "0-3" {
			t.Errorf("UnmarshalText(%q) failed but changed the bitmap to %s", bad, ids)
		}
	}
}
