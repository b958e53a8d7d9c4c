// Command rules is a validation and rule engine in the style of JSON
// Schema: rule sets live in the module's KV store, where they can be
// changed at run time, and documents are checked against them.
//
// The gateway mounts it at /rules and /rules/*:
//
//   - PUT /rules/sets/{name} stores a rule set (below). A set that does
//     not compile (an unknown type, a bad pattern, min above max, an
//     unknown key) is refused with 400 and the reason; a stored set answers
//     200 {"name","fields"}.
//   - GET /rules/sets/{name} returns the stored set as it was sent; DELETE
//     removes it (204); both answer 404 for a set that does not exist.
//     GET /rules/sets lists the names.
//   - POST /rules/validate/{name} checks a JSON document against the set:
//     200 {"valid":true}, or 422 {"valid":false,"violations":[{"path",
//     "message"}, ...]} with every violation found, in document order of
//     the rules (fields by name). A body that is not JSON is 400, a set
//     that does not exist 404.
//
// A rule set is an object rule for the document:
//
//	{
//	  "strict": true,
//	  "fields": {
//	    "email": {"type": "string", "required": true, "maxLength": 254, "pattern": "^[^@\\s]+@[^@\\s]+$"},
//	    "age":   {"type": "integer", "min": 18, "max": 150},
//	    "plan":  {"enum": ["free", "pro"]},
//	    "tags":  {"type": "array", "maxLength": 5, "items": {"type": "string", "minLength": 1}},
//	    "address": {"type": "object", "fields": {"zip": {"type": "string", "pattern": "^[0-9]{5}$"}}}
//	  }
//	}
//
// A rule has these keys, all optional:
//
//   - type: "string", "number", "integer" (a number without a fractional
//     part, so 2.0 is one), "boolean", "object" or "array"; no type
//     accepts any value.
//   - required: the field must be present. A null value counts as absent,
//     as an empty form field would.
//   - min, max: bounds for numbers, inclusive.
//   - minLength, maxLength: bounds for the length of strings (in
//     characters, not bytes) and arrays (in items).
//   - pattern: a regular expression (Go's RE2 syntax) that strings must
//     match somewhere, as in JSON Schema; anchor it with ^ and $ to match
//     the whole string.
//   - enum: the values allowed, compared as JSON values (1 equals 1.0).
//   - fields and strict: the rules of an object's fields; with strict, a
//     field that has no rule is a violation.
//   - items: the rule every item of an array must follow.
//
// Paths in violations start at $, the document: $.email, $.tags[2],
// $.address.zip.
//
// Every request reads its rule set from KV, so a set stored by any
// instance is used by the next request everywhere. Compiling a set
// (parsing it, compiling its patterns) is the expensive part, so each
// instance keeps the sets it compiled, keyed by the stored bytes: a
// changed set has other bytes and is compiled again.
//
//	[modules.rules.grants]
//	kv = true
//
// Build:
//
//	GOOS=wasip1 GOARCH=wasm go build -buildmode=c-shared -o rules.wasm .
package main

import (
	"bytes"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net/http"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"

	shanhai "github.com/shanhai-edge/shanhai/sdk/go"
)

const (
	// maxBody bounds rule sets and documents.
	maxBody = 1 << 20
	// keyPrefix is the KV key prefix of rule sets: the set "signup" is
	// stored at "set:signup".
	keyPrefix = "set:"
	// maxCached bounds the per-instance cache of compiled sets.
	maxCached = 64
)

var (
	// validName matches the names of rule sets.
	validName = regexp.MustCompile(`^[A-Za-z0-9_-]{1,64}$`)
	// plainName matches the field names a path writes after a dot.
	plainName = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)
)

func init() {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /rules/sets", listSets)
	mux.HandleFunc("PUT /rules/sets/{name}", putSet)
	mux.HandleFunc("GET /rules/sets/{name}", getSet)
	mux.HandleFunc("DELETE /rules/sets/{name}", deleteSet)
	mux.HandleFunc("POST /rules/validate/{name}", validate)
	shanhai.HandleHTTP(mux)
}

// main is empty: the gateway calls the module's exports, not main.
func main() {}

// Rule is one rule, as stored in a rule set (see the package
// documentation). A rule set is a Rule for the whole document, whose type
// is always object.
type Rule struct {
	Type      string           `json:"type,omitempty"`
	Required  bool             `json:"required,omitempty"`
	Min       *float64         `json:"min,omitempty"`
	Max       *float64         `json:"max,omitempty"`
	MinLength *int             `json:"minLength,omitempty"`
	MaxLength *int             `json:"maxLength,omitempty"`
	Pattern   string           `json:"pattern,omitempty"`
	Enum      []any            `json:"enum,omitempty"`
	Fields    map[string]*Rule `json:"fields,omitempty"`
	Strict    bool             `json:"strict,omitempty"`
	Items     *Rule            `json:"items,omitempty"`
}

// Violation is one way a document breaks its rule set.
type Violation struct {
	Path    string `json:"path"`
	Message string `json:"message"`
}

// Compiled is a rule set, or one of its rules, ready to check values:
// patterns compiled, fields in a fixed order, so that violations always
// come in the same order.
type Compiled struct {
	Rule
	pattern *regexp.Regexp
	names   []string // sorted field names
	fields  map[string]*Compiled
	items   *Compiled
}

// Compile checks a rule set and prepares it for [Validate].
func Compile(set []byte) (*Compiled, error) {
	dec := json.NewDecoder(bytes.NewReader(set))
	dec.DisallowUnknownFields()
	dec.UseNumber() // enum values compare as numbers, not float64 approximations
	var root Rule
	if err := dec.Decode(&root); err != nil {
		return nil, fmt.Errorf("not a rule set: %v", err)
	}
	if dec.More() {
		return nil, errors.New("not a rule set: data after the JSON object")
	}
	if root.Type != "" && root.Type != "object" {
		return nil, fmt.Errorf("$: a rule set describes an object, not %s %s", article(root.Type), root.Type)
	}
	root.Type = "object"
	return compile(&root, "$")
}

var types = []string{"string", "number", "integer", "boolean", "object", "array"}

func compile(r *Rule, path string) (*Compiled, error) {
	if r == nil {
		return nil, fmt.Errorf("%s: a rule must be an object, not null", path)
	}
	c := &Compiled{Rule: *r}
	if r.Type != "" && !slices.Contains(types, r.Type) {
		return nil, fmt.Errorf("%s: unknown type %q (the types are %s)", path, r.Type, strings.Join(types, ", "))
	}
	if r.Min != nil && r.Max != nil && *r.Min > *r.Max {
		return nil, fmt.Errorf("%s: min %v is above max %v", path, *r.Min, *r.Max)
	}
	if (r.MinLength != nil && *r.MinLength < 0) || (r.MaxLength != nil && *r.MaxLength < 0) {
		return nil, fmt.Errorf("%s: minLength and maxLength must not be negative", path)
	}
	if r.MinLength != nil && r.MaxLength != nil && *r.MinLength > *r.MaxLength {
		return nil, fmt.Errorf("%s: minLength %d is above maxLength %d", path, *r.MinLength, *r.MaxLength)
	}
	if r.Pattern != "" {
		re, err := regexp.Compile(r.Pattern)
		if err != nil {
			return nil, fmt.Errorf("%s: bad pattern: %v", path, err)
		}
		c.pattern = re
	}
	if len(r.Fields) > 0 || r.Strict {
		if r.Type != "object" {
			return nil, fmt.Errorf("%s: fields and strict need type object", path)
		}
		c.fields = make(map[string]*Compiled, len(r.Fields))
		for name, f := range r.Fields {
			fc, err := compile(f, fieldPath(path, name))
			if err != nil {
				return nil, err
			}
			c.fields[name] = fc
			c.names = append(c.names, name)
		}
		slices.Sort(c.names)
	}
	if r.Items != nil {
		if r.Type != "array" {
			return nil, fmt.Errorf("%s: items needs type array", path)
		}
		ic, err := compile(r.Items, path+"[]")
		if err != nil {
			return nil, err
		}
		c.items = ic
	}
	return c, nil
}

// Validate checks doc, a decoded JSON document (numbers as json.Number),
// against the rule set c and returns every violation.
func Validate(c *Compiled, doc any) []Violation {
	var out []Violation
	c.check(doc, "$", &out)
	return out
}

func (c *Compiled) check(v any, path string, out *[]Violation) {
	add := func(format string, args ...any) {
		*out = append(*out, Violation{Path: path, Message: fmt.Sprintf(format, args...)})
	}
	if c.Type != "" && kind(v) != c.Type && !(c.Type == "number" && kind(v) == "integer") {
		// "integer" is a number too; anything else of the wrong type has
		// no other checks worth running.
		add("must be %s %s, not %s", article(c.Type), c.Type, describe(v))
		return
	}
	if len(c.Enum) > 0 && !slices.ContainsFunc(c.Enum, func(e any) bool { return equal(e, v) }) {
		add("must be one of %s", list(c.Enum))
	}
	switch v := v.(type) {
	case json.Number:
		f, err := v.Float64()
		if err != nil {
			add("is not a usable number: %v", err)
			return
		}
		if c.Min != nil && f < *c.Min {
			add("must be at least %v", *c.Min)
		}
		if c.Max != nil && f > *c.Max {
			add("must be at most %v", *c.Max)
		}
	case string:
		c.checkLength(utf8.RuneCountInString(v), "characters", add)
		if c.pattern != nil && !c.pattern.MatchString(v) {
			add("must match the pattern %s", c.Pattern)
		}
	case []any:
		c.checkLength(len(v), "items", add)
		if c.items != nil {
			for i, item := range v {
				c.items.check(item, path+"["+strconv.Itoa(i)+"]", out)
			}
		}
	case map[string]any:
		for _, name := range c.names {
			f := c.fields[name]
			value, present := v[name]
			if !present || value == nil {
				if f.Required {
					*out = append(*out, Violation{Path: fieldPath(path, name), Message: "is required"})
				}
				continue
			}
			f.check(value, fieldPath(path, name), out)
		}
		if c.Strict {
			for _, name := range sortedKeys(v) {
				if _, ok := c.fields[name]; !ok {
					*out = append(*out, Violation{Path: fieldPath(path, name), Message: "is not an allowed field"})
				}
			}
		}
	}
}

func (c *Compiled) checkLength(n int, unit string, add func(string, ...any)) {
	if c.MinLength != nil && n < *c.MinLength {
		add("must have at least %d %s, not %d", *c.MinLength, unit, n)
	}
	if c.MaxLength != nil && n > *c.MaxLength {
		add("must have at most %d %s, not %d", *c.MaxLength, unit, n)
	}
}

// kind is the rule type of a decoded JSON value; "null" for null.
func kind(v any) string {
	switch v := v.(type) {
	case string:
		return "string"
	case bool:
		return "boolean"
	case []any:
		return "array"
	case map[string]any:
		return "object"
	case json.Number:
		if f, err := v.Float64(); err == nil && f == math.Trunc(f) && !math.IsInf(f, 0) {
			return "integer"
		}
		return "number"
	}
	return "null"
}

// describe names a value's type for a message: "a string", "the number 2.5".
func describe(v any) string {
	switch k := kind(v); k {
	case "integer", "number":
		return "the number " + v.(json.Number).String()
	case "null":
		return "null"
	default:
		return article(k) + " " + k
	}
}

func article(word string) string {
	if strings.ContainsRune("aeiou", rune(word[0])) {
		return "an"
	}
	return "a"
}

// equal compares two decoded JSON values as JSON values: numbers by value.
func equal(a, b any) bool {
	switch a := a.(type) {
	case json.Number:
		b, ok := b.(json.Number)
		if !ok {
			return false
		}
		fa, errA := a.Float64()
		fb, errB := b.Float64()
		return errA == nil && errB == nil && fa == fb
	case []any:
		b, ok := b.([]any)
		return ok && slices.EqualFunc(a, b, equal)
	case map[string]any:
		b, ok := b.(map[string]any)
		if !ok || len(a) != len(b) {
			return false
		}
		for k, va := range a {
			if vb, ok := b[k]; !ok || !equal(va, vb) {
				return false
			}
		}
		return true
	default:
		return a == b // string, bool, nil
	}
}

// list formats enum values as JSON, comma-separated.
func list(values []any) string {
	parts := make([]string, len(values))
	for i, v := range values {
		b, _ := json.Marshal(v)
		parts[i] = string(b)
	}
	return strings.Join(parts, ", ")
}

// fieldPath appends a field to a path: $.email, or $["first name"] when
// the name would not read as one.
func fieldPath(path, name string) string {
	if plainName.MatchString(name) {
		return path + "." + name
	}
	return path + "[" + strconv.Quote(name) + "]"
}

func sortedKeys(m map[string]any) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

// cache holds this instance's compiled rule sets by the SHA-256 of their
// stored bytes. The KV store is the only source of truth (another
// instance may have replaced a set a moment ago), so every request reads
// the set; only compiling is saved. compiles counts the cache misses.
var (
	cache    = make(map[[sha256.Size]byte]*Compiled)
	compiles int
)

// ruleSet returns the compiled set stored as raw.
func ruleSet(raw []byte) (*Compiled, error) {
	sum := sha256.Sum256(raw)
	if c, ok := cache[sum]; ok {
		return c, nil
	}
	c, err := Compile(raw)
	if err != nil {
		return nil, err
	}
	compiles++
	if len(cache) >= maxCached {
		// Old versions of sets are never asked for again; dropping
		// everything now and then is simpler than tracking recency and
		// costs a few recompilations.
		clear(cache)
	}
	cache[sum] = c
	return c, nil
}

// setName returns the {name} path value, or answers 400.
func setName(w http.ResponseWriter, r *http.Request) (string, bool) {
	name := r.PathValue("name")
	if !validName.MatchString(name) {
		writeError(w, http.StatusBadRequest, "a rule set name is 1 to 64 letters, digits, '-' or '_'")
		return "", false
	}
	return name, true
}

func putSet(w http.ResponseWriter, r *http.Request) {
	name, ok := setName(w, r)
	if !ok {
		return
	}
	raw, ok := readBody(w, r)
	if !ok {
		return
	}
	c, err := ruleSet(raw)
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	if err := shanhai.Store("").Set(keyPrefix+name, raw, 0); err != nil {
		storeFailed(w, "storing rule set "+name, err)
		return
	}
	slog.Info("rule set stored", "name", name, "fields", len(c.fields))
	writeJSON(w, http.StatusOK, map[string]any{"name": name, "fields": len(c.fields)})
}

func getSet(w http.ResponseWriter, r *http.Request) {
	name, ok := setName(w, r)
	if !ok {
		return
	}
	raw, ok := loadSet(w, name)
	if !ok {
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Write(raw)
}

func deleteSet(w http.ResponseWriter, r *http.Request) {
	name, ok := setName(w, r)
	if !ok {
		return
	}
	err := shanhai.Store("").Delete(keyPrefix + name)
	if errors.Is(err, shanhai.ErrNotFound) {
		writeError(w, http.StatusNotFound, "no rule set "+name)
		return
	}
	if err != nil {
		storeFailed(w, "deleting rule set "+name, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func listSets(w http.ResponseWriter, _ *http.Request) {
	names := []string{}
	for cursor := ""; ; {
		keys, next, err := shanhai.Store("").List(keyPrefix, cursor, 1000)
		if err != nil {
			storeFailed(w, "listing rule sets", err)
			return
		}
		for _, k := range keys {
			names = append(names, strings.TrimPrefix(k, keyPrefix))
		}
		if next == "" {
			break
		}
		cursor = next
	}
	writeJSON(w, http.StatusOK, map[string]any{"sets": names})
}

func validate(w http.ResponseWriter, r *http.Request) {
	name, ok := setName(w, r)
	if !ok {
		return
	}
	body, ok := readBody(w, r)
	if !ok {
		return
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	var doc any
	if err := dec.Decode(&doc); err != nil || dec.More() {
		writeError(w, http.StatusBadRequest, "the document is not one JSON value")
		return
	}
	raw, ok := loadSet(w, name)
	if !ok {
		return
	}
	c, err := ruleSet(raw)
	if err != nil {
		// Only PUT writes sets, and it refuses bad ones, so someone wrote
		// this one to KV directly.
		writeError(w, http.StatusInternalServerError, "stored rule set "+name+" does not compile: "+err.Error())
		return
	}
	if v := Validate(c, doc); len(v) > 0 {
		writeJSON(w, http.StatusUnprocessableEntity, map[string]any{"valid": false, "violations": v})
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"valid": true})
}

// loadSet reads a stored set, or answers 404 or the store's failure.
func loadSet(w http.ResponseWriter, name string) ([]byte, bool) {
	raw, err := shanhai.Store("").Get(keyPrefix + name)
	if errors.Is(err, shanhai.ErrNotFound) {
		writeError(w, http.StatusNotFound, "no rule set "+name)
		return nil, false
	}
	if err != nil {
		storeFailed(w, "reading rule set "+name, err)
		return nil, false
	}
	return raw, true
}

func readBody(w http.ResponseWriter, r *http.Request) ([]byte, bool) {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxBody))
	if err != nil {
		writeError(w, http.StatusRequestEntityTooLarge, fmt.Sprintf("the body is larger than %d bytes", maxBody))
		return nil, false
	}
	return body, true
}

// storeFailed answers a failed KV call: 503 when the store is down, 500
// otherwise (a missing grant is the deployment's mistake, and the host's
// message says which grant).
func storeFailed(w http.ResponseWriter, what string, err error) {
	slog.Error(what, "err", err)
	status := http.StatusInternalServerError
	if errors.Is(err, shanhai.ErrUnavailable) {
		status = http.StatusServiceUnavailable
	}
	writeError(w, status, what+": "+err.Error())
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(v)
}

func writeError(w http.ResponseWriter, status int, message string) {
	writeJSON(w, status, map[string]string{"error": message})
}
