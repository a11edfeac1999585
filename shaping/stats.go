package shaping

// ClassStats are the counters of one HTB class.
type ClassStats struct {
	// Dev is the device the class lives on: the port or bridge, or for
	// Outbound its IFB.
	Dev string
	// Outbound is set for the classes on the IFB, which shape what the
	// guest (or the network) sends; the others shape what it receives.
	Outbound bool
	Class    Handle
	Parent   Handle
	// Rate and Ceil are the configured rates in bytes/s.
	Rate, Ceil uint64
	// Bytes and Packets went through the class (at the link layer);
	// Drops were dropped by its leaf, Overlimits counts the times it was
	// throttled; Backlog is queued now, in bytes.
	Bytes      uint64
	Packets    uint32
	Drops      uint32
	Overlimits uint32
	Backlog    uint32
}
