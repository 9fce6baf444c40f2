package hook

import (
	"fmt"
	"maps"
	"slices"
	"unicode/utf8"

	"github.com/expr-lang/expr"
	"github.com/expr-lang/expr/ast"
	"github.com/expr-lang/expr/parser"
	"github.com/expr-lang/expr/vm"

	"github.com/sluicehq/sluice/internal/event"
	"github.com/sluicehq/sluice/internal/sink"
)

// Bounds of a hook definition, checked when it is saved (docs/hooks.md,
// "Limits"). Each destination bounds its own settings (the sink
// packages).
const (
	MaxNameLength = 200
	MaxEventGlobs = 100
	MaxCustomData = 100
	MaxCustomKey  = 128
	MaxTemplate   = 4096
	MaxRetryTimes = 100
	MaxInFlight   = 64
	MaxDeadStreak = 1000 // stop_after_dead_letters

	// A filter is at most MaxFilterLength bytes and MaxFilterNodes
	// syntax nodes. Its cost per event is bounded by its shape: a range
	// has whole-number literal bounds and at most MaxFilterRange
	// elements, a predicate (any, all, filter, map, …) is not nested in
	// another's, and repeat() is not available, so a filter runs in time
	// linear in its size and the event's.
	MaxFilterLength = 4096
	MaxFilterNodes  = 500
	MaxFilterRange  = 1000
)

// Error is a hook that cannot be saved: its Fields say where and why.
// It wraps ErrInvalid, or project.ErrNotFound for a project that does
// not exist.
type Error struct {
	Err     error
	Message string
	Fields  event.FieldErrors
}

func (e *Error) Error() string {
	if len(e.Fields) == 0 {
		return e.Message
	}
	return e.Message + ": " + e.Fields.Error()
}

func (e *Error) Unwrap() error { return e.Err }

// FieldErrors are the violations, for the API's errors list.
func (e *Error) FieldErrors() event.FieldErrors { return e.Fields }

// problems collects the violations of one definition.
type problems struct{ *sink.Problems }

func newProblems() *problems { return &problems{sink.NewProblems()} }

func (p *problems) add(path, format string, a ...any) { p.Add(path, format, a...) }

func (p *problems) err() error {
	fe := p.Errors()
	if len(fe) == 0 {
		return nil
	}
	return &Error{Err: ErrInvalid, Message: ErrInvalid.Error(), Fields: fe}
}

// key is the path of a map member: custom_data["x"].
func key(path, k string) string { return sink.Key(path, k) }

// compileFilter compiles a filter within its bounds.
func compileFilter(p *problems, src string) *vm.Program {
	if len(src) > MaxFilterLength {
		p.add("filter", "at most %d bytes", MaxFilterLength)
		return nil
	}
	tree, err := parser.Parse(src)
	if err != nil {
		p.add("filter", "%v", err)
		return nil
	}
	c := &filterCost{}
	ast.Walk(&tree.Node, c)
	if c.problem != "" {
		p.add("filter", "%s", c.problem)
		return nil
	}
	prog, err := expr.Compile(src, expr.Env(map[string]any{"event": map[string]any{}, "profile": map[string]any{}}), expr.AsBool(),
		expr.MaxNodes(MaxFilterNodes), expr.DisableBuiltin("repeat"))
	if err != nil {
		p.add("filter", "%v", err)
		return nil
	}
	return prog
}

// filterCost finds the shapes whose cost per event is not bounded by the
// filter's size and the event's: a large or non-literal range, and a
// predicate inside another's (quadratic in the event's arrays).
type filterCost struct{ problem string }

func (c *filterCost) Visit(node *ast.Node) {
	if c.problem != "" {
		return
	}
	switch n := (*node).(type) {
	case *ast.BinaryNode:
		if n.Operator != ".." {
			return
		}
		from, ok1 := intLiteral(n.Left)
		to, ok2 := intLiteral(n.Right)
		switch {
		case !ok1 || !ok2:
			c.problem = "a range (a..b) needs whole-number literal bounds"
		case to-from+1 > MaxFilterRange:
			c.problem = fmt.Sprintf("the range %d..%d has %d elements; at most %d", from, to, to-from+1, MaxFilterRange)
		}
	case *ast.BuiltinNode:
		if n.Name == "repeat" {
			c.problem = "repeat() is not available in filters"
		}
	case *ast.PredicateNode:
		inner := &predicateFinder{}
		ast.Walk(&n.Node, inner)
		if inner.found != "" {
			c.problem = fmt.Sprintf("%s(…) inside another predicate: a filter may not nest predicates (any, all, filter, map, …)", inner.found)
		}
	}
}

type predicateFinder struct{ found string }

func (f *predicateFinder) Visit(node *ast.Node) {
	if b, ok := (*node).(*ast.BuiltinNode); ok && f.found == "" {
		for _, a := range b.Arguments {
			if _, ok := a.(*ast.PredicateNode); ok {
				f.found = b.Name
			}
		}
	}
}

func intLiteral(n ast.Node) (int, bool) {
	switch x := n.(type) {
	case *ast.IntegerNode:
		return x.Value, true
	case *ast.UnaryNode:
		if v, ok := intLiteral(x.Node); ok && x.Operator == "-" {
			return -v, true
		}
	}
	return 0, false
}

// checkTemplate parses a template field (custom_data, a routing or record
// key) at path.
func checkTemplate(p *problems, path, k, v string) (customField, bool) {
	if len(v) > MaxTemplate {
		p.add(path, "at most %d bytes", MaxTemplate)
		return customField{}, false
	}
	if !utf8.ValidString(v) {
		p.add(path, "not valid UTF-8")
		return customField{}, false
	}
	f, err := parseTemplate(k, v)
	if err != nil {
		p.add(path, "%v", err)
		return customField{}, false
	}
	return f, true
}

func sortedKeys(m map[string]string) []string { return slices.Sorted(maps.Keys(m)) }
