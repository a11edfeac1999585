package ovs

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
)

// database is the Open vSwitch configuration database (vswitch.ovsschema).
const database = "Open_vSwitch"

// OVSDB value notation (RFC 7047 §5.1).

// uuidRef is <uuid>: ["uuid", "…"].
type uuidRef string

func (u uuidRef) MarshalJSON() ([]byte, error) {
	return json.Marshal([2]string{"uuid", string(u)})
}

// namedRef is <named-uuid>: ["named-uuid", "…"], a row inserted earlier in
// the same transaction.
type namedRef string

func (n namedRef) MarshalJSON() ([]byte, error) {
	return json.Marshal([2]string{"named-uuid", string(n)})
}

// ovsSet is <set>: ["set", [atoms…]]. An empty set is how a column of
// min 0, max 1 (tag, vlan_mode) is cleared.
type ovsSet []any

func (s ovsSet) MarshalJSON() ([]byte, error) {
	elems := []any(s)
	if elems == nil {
		elems = []any{}
	}
	return json.Marshal([]any{"set", elems})
}

// ovsMap is <map> of strings: ["map", [[key, value]…]], in the order given.
type ovsMap [][2]string

func (m ovsMap) MarshalJSON() ([]byte, error) {
	pairs := [][2]string(m)
	if pairs == nil {
		pairs = [][2]string{}
	}
	return json.Marshal([]any{"map", pairs})
}

// row is a table row by column name.
type row map[string]any

// condition is [column, function, value].
type condition [3]any

func eq(column string, value any) condition { return condition{column, "==", value} }

func includes(column string, value any) condition {
	return condition{column, "includes", value}
}

// mutation is [column, mutator, value].
type mutation [3]any

// operation is one element of a transact request. Only the members a kind
// of operation uses are set; "where" is always sent where it is required.
type operation struct {
	Op        string      `json:"op"`
	Table     string      `json:"table"`
	Where     []condition `json:"where,omitempty"`
	Row       row         `json:"row,omitempty"`
	UUIDName  string      `json:"uuid-name,omitempty"`
	Columns   []string    `json:"columns,omitempty"`
	Mutations []mutation  `json:"mutations,omitempty"`
	// Wait only: Rows is sent even when empty.
	Timeout *int   `json:"timeout,omitempty"`
	Until   string `json:"until,omitempty"`
	Rows    []row  `json:"-"`
}

func (o operation) MarshalJSON() ([]byte, error) {
	type plain operation // without the method
	if o.Op != "wait" {
		return json.Marshal(plain(o))
	}
	rows := o.Rows
	if rows == nil {
		rows = []row{}
	}
	return json.Marshal(struct {
		plain
		Rows []row `json:"rows"`
	}{plain(o), rows})
}

func (o operation) String() string { return o.Op + " " + o.Table }

func opInsert(table string, r row, uuidName string) operation {
	return operation{Op: "insert", Table: table, Row: r, UUIDName: uuidName}
}

func opSelect(table string, where []condition, columns ...string) operation {
	return operation{Op: "select", Table: table, Where: where, Columns: columns}
}

func opUpdate(table string, where []condition, r row) operation {
	return operation{Op: "update", Table: table, Where: where, Row: r}
}

func opMutate(table string, where []condition, mutations ...mutation) operation {
	return operation{Op: "mutate", Table: table, Where: where, Mutations: mutations}
}

// opAssert is a "wait" with timeout 0: the transaction fails at once with
// "timed out" unless the rows matching where, projected on columns, are
// exactly rows. It guards a write against a concurrent change of what it
// was built from.
func opAssert(table string, where []condition, columns []string, rows ...row) operation {
	zero := 0
	return operation{Op: "wait", Table: table, Where: where, Columns: columns,
		Until: "==", Rows: rows, Timeout: &zero}
}

// opResult is one element of a transact result. A null element (an
// operation after a failed one) decodes to the zero value.
type opResult struct {
	Count   *int                         `json:"count"`
	UUID    json.RawMessage              `json:"uuid"`
	Rows    []map[string]json.RawMessage `json:"rows"`
	Error   string                       `json:"error"`
	Details string                       `json:"details"`
}

// TransactError is a transaction the server refused: an operation failed
// (Op is its index), or the commit did (Op is the number of operations, for
// example a constraint violation or a referential integrity error).
type TransactError struct {
	Op      int
	What    string // "insert Port", … or "commit"
	Err     string // the OVSDB error tag, e.g. "timed out", "constraint violation"
	Details string
}

func (e *TransactError) Error() string {
	s := fmt.Sprintf("ovsdb transact: %s (operation %d): %s", e.What, e.Op, e.Err)
	if e.Details != "" {
		s += ": " + e.Details
	}
	return s
}

// transact runs ops as one transaction on the Open_vSwitch database and
// returns one result per operation. A refused transaction is a
// *TransactError (RFC 7047 §4.1.3).
func (c *Client) transact(ctx context.Context, ops []operation) ([]opResult, error) {
	params := make([]any, 0, 1+len(ops))
	params = append(params, database)
	for _, op := range ops {
		params = append(params, op)
	}
	var raw []json.RawMessage
	if err := c.call(ctx, "transact", params, &raw); err != nil {
		return nil, err
	}
	return parseTransactResult(ops, raw)
}

func parseTransactResult(ops []operation, raw []json.RawMessage) ([]opResult, error) {
	results := make([]opResult, len(raw))
	for i, r := range raw {
		if err := json.Unmarshal(r, &results[i]); err != nil {
			return nil, fmt.Errorf("ovsdb transact: decode result %d: %w", i, err)
		}
	}
	for i, r := range results {
		if r.Error == "" {
			continue
		}
		what := "commit"
		if i < len(ops) {
			what = ops[i].String()
		}
		return nil, &TransactError{Op: i, What: what, Err: r.Error, Details: r.Details}
	}
	if len(results) < len(ops) {
		return nil, fmt.Errorf("ovsdb transact: %d results for %d operations", len(results), len(ops))
	}
	return results[:len(ops)], nil
}

// failedOp reports whether err is a refused transaction whose operation
// index failed.
func failedOp(err error, index int) bool {
	var te *TransactError
	return errors.As(err, &te) && te.Op == index
}

// decodeUUID decodes <uuid>.
func decodeUUID(raw json.RawMessage) (string, error) {
	var pair [2]string
	if err := json.Unmarshal(raw, &pair); err != nil || pair[0] != "uuid" {
		return "", fmt.Errorf("not an ovsdb uuid: %s", raw)
	}
	return pair[1], nil
}

// decodeUUIDSet decodes a set of uuids, which the server sends as a bare
// <uuid> when it has exactly one element.
func decodeUUIDSet(raw json.RawMessage) ([]string, error) {
	var pair [2]json.RawMessage
	if err := json.Unmarshal(raw, &pair); err != nil {
		return nil, fmt.Errorf("not an ovsdb set of uuids: %s", raw)
	}
	var tag string
	if err := json.Unmarshal(pair[0], &tag); err != nil {
		return nil, fmt.Errorf("not an ovsdb set of uuids: %s", raw)
	}
	switch tag {
	case "uuid":
		u, err := decodeUUID(raw)
		if err != nil {
			return nil, err
		}
		return []string{u}, nil
	case "set":
		var elems []json.RawMessage
		if err := json.Unmarshal(pair[1], &elems); err != nil {
			return nil, fmt.Errorf("not an ovsdb set of uuids: %s", raw)
		}
		out := make([]string, 0, len(elems))
		for _, e := range elems {
			u, err := decodeUUID(e)
			if err != nil {
				return nil, err
			}
			out = append(out, u)
		}
		return out, nil
	}
	return nil, fmt.Errorf("not an ovsdb set of uuids: %s", raw)
}
