//go:build !wasm

// The tests run natively, against shanhaitest's mock host.

package main

import (
	"encoding/json"
	"io"
	"net/http/httptest"
	"reflect"
	"strings"
	"testing"

	"github.com/shanhai-edge/shanhai/sdk/go/shanhaitest"
)

// start resets the mock host and the instance's cache and grants the
// module its KV store.
func start(t *testing.T) {
	t.Helper()
	shanhaitest.Reset()
	clear(cache)
	compiles = 0
	shanhaitest.SetGrants(shanhaitest.Grants{KV: true})
}

// do serves one request and returns the status and the body.
func do(t *testing.T, method, target, body string) (int, string) {
	t.Helper()
	resp, err := shanhaitest.Do(httptest.NewRequest(method, target, strings.NewReader(body)))
	if err != nil {
		t.Fatalf("%s %s: %v", method, target, err)
	}
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, string(b)
}

// violations validates doc against the set name and returns the
// violations (nil when valid), failing on any status but 200 and 422.
func violations(t *testing.T, name, doc string) []Violation {
	t.Helper()
	status, body := do(t, "POST", "/rules/validate/"+name, doc)
	var reply struct {
		Valid      bool        `json:"valid"`
		Violations []Violation `json:"violations"`
	}
	if err := json.Unmarshal([]byte(body), &reply); err != nil {
		t.Fatalf("validate %s: %d %s", doc, status, body)
	}
	switch {
	case status == 200 && reply.Valid && reply.Violations == nil:
	case status == 422 && !reply.Valid && len(reply.Violations) > 0:
	default:
		t.Fatalf("validate %s: %d %s", doc, status, body)
	}
	return reply.Violations
}

const signup = `{
  "strict": true,
  "fields": {
    "email": {"type": "string", "required": true, "maxLength": 254, "pattern": "^[^@\\s]+@[^@\\s]+$"},
    "age": {"type": "integer", "min": 18, "max": 150},
    "plan": {"enum": ["free", "pro", 3]},
    "name": {"type": "string", "minLength": 2, "maxLength": 5},
    "tags": {"type": "array", "maxLength": 2, "items": {"type": "string", "minLength": 1}},
    "address": {"type": "object", "fields": {"zip": {"type": "string", "required": true, "pattern": "^[0-9]{5}$"}}},
    "first name": {"type": "boolean"}
  }
}`

func put(t *testing.T, name, set string) {
	t.Helper()
	if status, body := do(t, "PUT", "/rules/sets/"+name, set); status != 200 {
		t.Fatalf("PUT %s: %d %s", name, status, body)
	}
}

func TestStoreAndGet(t *testing.T) {
	start(t)
	status, body := do(t, "PUT", "/rules/sets/signup", signup)
	if status != 200 || body != `{"fields":7,"name":"signup"}`+"\n" {
		t.Fatalf("PUT: %d %s", status, body)
	}
	if raw, ok := shanhaitest.KVValue("", "set:signup"); !ok || string(raw) != signup {
		t.Errorf("KV holds %q", raw)
	}
	if status, body := do(t, "GET", "/rules/sets/signup", ""); status != 200 || body != signup {
		t.Errorf("GET: %d %s", status, body)
	}
	put(t, "other", `{"fields":{}}`)
	if status, body := do(t, "GET", "/rules/sets", ""); status != 200 || body != `{"sets":["other","signup"]}`+"\n" {
		t.Errorf("list: %d %s", status, body)
	}
	if status, _ := do(t, "DELETE", "/rules/sets/other", ""); status != 204 {
		t.Errorf("DELETE: %d", status)
	}
	for _, method := range []string{"GET", "DELETE"} {
		if status, body := do(t, method, "/rules/sets/other", ""); status != 404 || !strings.Contains(body, "no rule set other") {
			t.Errorf("%s after DELETE: %d %s", method, status, body)
		}
	}
}

func TestValid(t *testing.T) {
	start(t)
	put(t, "signup", signup)
	for _, doc := range []string{
		`{"email": "a@b.example"}`,
		`{"email": "a@b.example", "age": 18.0, "plan": "pro", "name": "Zoë", "tags": ["x", "y"], "address": {"zip": "12345"}, "first name": true}`,
		`{"email": "a@b.example", "plan": 3.0, "age": null}`,
	} {
		if v := violations(t, "signup", doc); v != nil {
			t.Errorf("%s: %+v", doc, v)
		}
	}
}

func TestViolations(t *testing.T) {
	start(t)
	put(t, "signup", signup)
	for _, tc := range []struct {
		doc  string
		want []Violation
	}{
		{`{}`, []Violation{{"$.email", "is required"}}},
		{`{"email": null}`, []Violation{{"$.email", "is required"}}},
		{`[]`, []Violation{{"$", "must be an object, not an array"}}},
		{`{"email": 7}`, []Violation{{"$.email", "must be a string, not the number 7"}}},
		{`{"email": "nobody"}`, []Violation{{"$.email", `must match the pattern ^[^@\s]+@[^@\s]+$`}}},
		{
			`{"email": "a@b", "age": 17.5, "plan": "gold", "name": "Ü", "tags": ["", "b", "c"], "address": {}, "first name": "yes", "extra": 1}`,
			[]Violation{
				{"$.address.zip", "is required"},
				{"$.age", "must be an integer, not the number 17.5"},
				{"$[\"first name\"]", "must be a boolean, not a string"},
				{"$.name", "must have at least 2 characters, not 1"},
				{"$.plan", `must be one of "free", "pro", 3`},
				{"$.tags", "must have at most 2 items, not 3"},
				{"$.tags[0]", "must have at least 1 characters, not 0"},
				{"$.extra", "is not an allowed field"},
			},
		},
		{`{"email": "a@b", "age": 151, "address": {"zip": "1234"}}`, []Violation{
			{"$.address.zip", "must match the pattern ^[0-9]{5}$"},
			{"$.age", "must be at most 150"},
		}},
		{`{"email": "a@b", "age": 3}`, []Violation{{"$.age", "must be at least 18"}}},
	} {
		if got := violations(t, "signup", tc.doc); !reflect.DeepEqual(got, tc.want) {
			t.Errorf("%.80s\n got %+v\nwant %+v", tc.doc, got, tc.want)
		}
	}
	// 250 x's and "@b.c" are 254 characters, the most allowed.
	if v := violations(t, "signup", `{"email": "`+strings.Repeat("x", 250)+`@b.c"}`); v != nil {
		t.Errorf("254 characters: %+v", v)
	}
	long := `{"email": "` + strings.Repeat("x", 251) + `@b.c"}`
	if got := violations(t, "signup", long); !reflect.DeepEqual(got, []Violation{{"$.email", "must have at most 254 characters, not 255"}}) {
		t.Errorf("255 characters: %+v", got)
	}
}

// A set changed at run time, by this instance or another, applies from
// the next request; compiling happens once per version of a set.
func TestChangedAtRunTime(t *testing.T) {
	start(t)
	put(t, "limits", `{"fields": {"n": {"type": "integer", "max": 10}}}`)
	if v := violations(t, "limits", `{"n": 7}`); v != nil {
		t.Fatalf("n=7 under max 10: %+v", v)
	}
	violations(t, "limits", `{"n": 8}`)
	if compiles != 1 {
		t.Errorf("compiled %d times, want 1 (PUT, then two cache hits)", compiles)
	}

	put(t, "limits", `{"fields": {"n": {"type": "integer", "max": 5}}}`)
	if v := violations(t, "limits", `{"n": 7}`); len(v) != 1 || v[0].Message != "must be at most 5" {
		t.Errorf("after PUT: %+v", v)
	}

	// Another instance stores a new version: this one sees it at once.
	shanhaitest.KVPut("", "set:limits", []byte(`{"fields": {"n": {"type": "string"}}}`), 0)
	if v := violations(t, "limits", `{"n": 7}`); len(v) != 1 || v[0].Message != "must be a string, not the number 7" {
		t.Errorf("after another instance's write: %+v", v)
	}
	if compiles != 3 {
		t.Errorf("compiled %d times, want 3", compiles)
	}

	// Going back to an earlier version is a cache hit.
	put(t, "limits", `{"fields": {"n": {"type": "integer", "max": 10}}}`)
	violations(t, "limits", `{"n": 7}`)
	if compiles != 3 {
		t.Errorf("compiled %d times, want 3", compiles)
	}
}

func TestBadRuleSets(t *testing.T) {
	start(t)
	for _, tc := range []struct{ set, want string }{
		{`{"fields": {"a": {"type": "text"}}}`, `$.a: unknown type \"text\"`},
		{`{"fields": {"a": {"type": "string", "pattern": "("}}}`, `$.a: bad pattern: error parsing regexp`},
		{`{"fields": {"a": {"min": 3, "max": 1}}}`, `$.a: min 3 is above max 1`},
		{`{"fields": {"a": {"minLength": 3, "maxLength": 1}}}`, `$.a: minLength 3 is above maxLength 1`},
		{`{"fields": {"a": {"minLength": -1}}}`, `$.a: minLength and maxLength must not be negative`},
		{`{"fields": {"a": {"minimum": 3}}}`, `not a rule set: json: unknown field \"minimum\"`},
		{`{"fields": {"a": {"fields": {}, "strict": true}}}`, `$.a: fields and strict need type object`},
		{`{"fields": {"a": {"items": {}}}}`, `$.a: items needs type array`},
		{`{"fields": {"a": {"type": "array", "items": {"type": "x"}}}}`, `$.a[]: unknown type`},
		{`{"fields": {"a": null}}`, `$.a: a rule must be an object, not null`},
		{`{"type": "array"}`, `$: a rule set describes an object, not an array`},
		{`{"fields": {}} {}`, `data after the JSON object`},
		{`[1]`, `not a rule set`},
	} {
		status, body := do(t, "PUT", "/rules/sets/bad", tc.set)
		if status != 400 || !strings.Contains(body, tc.want) {
			t.Errorf("%s: %d %s, want 400 with %s", tc.set, status, body, tc.want)
		}
	}
	if keys := shanhaitest.KVKeys(""); len(keys) != 0 {
		t.Errorf("refused sets were stored: %v", keys)
	}
}

func TestBadRequests(t *testing.T) {
	start(t)
	put(t, "signup", signup)
	for _, tc := range []struct {
		method, target, body string
		status               int
		want                 string
	}{
		{"POST", "/rules/validate/missing", `{}`, 404, "no rule set missing"},
		{"GET", "/rules/sets/missing", ``, 404, "no rule set missing"},
		{"POST", "/rules/validate/signup", `{"email":`, 400, "not one JSON value"},
		{"POST", "/rules/validate/signup", `{} {}`, 400, "not one JSON value"},
		{"PUT", "/rules/sets/bad%20name", `{}`, 400, "1 to 64 letters"},
		{"PUT", "/rules/sets/" + strings.Repeat("n", 65), `{}`, 400, "1 to 64 letters"},
		{"PUT", "/rules/sets/big", strings.Repeat(" ", maxBody+1), 413, "larger than"},
		{"GET", "/rules/validate/signup", ``, 405, ""},
	} {
		status, body := do(t, tc.method, tc.target, tc.body)
		if status != tc.status || !strings.Contains(body, tc.want) {
			t.Errorf("%s %s: %d %s, want %d with %q", tc.method, tc.target, status, body, tc.status, tc.want)
		}
	}
}

// A set someone wrote to KV directly, bypassing PUT's checks.
func TestStoredSetThatDoesNotCompile(t *testing.T) {
	start(t)
	shanhaitest.KVPut("", "set:broken", []byte(`{"fields": {"a": {"type": "nope"}}}`), 0)
	status, body := do(t, "POST", "/rules/validate/broken", `{}`)
	if status != 500 || !strings.Contains(body, "stored rule set broken does not compile") {
		t.Errorf("%d %s", status, body)
	}
}

func TestKVNotGranted(t *testing.T) {
	start(t)
	put(t, "signup", signup)
	shanhaitest.SetGrants(shanhaitest.Grants{})
	for _, tc := range []struct{ method, target, body, want string }{
		{"POST", "/rules/validate/signup", `{}`, "reading rule set signup: shanhai: kv_get: denied"},
		{"PUT", "/rules/sets/signup", signup, "storing rule set signup: shanhai: kv_set: denied"},
		{"DELETE", "/rules/sets/signup", ``, "deleting rule set signup: shanhai: kv_delete: denied"},
		{"GET", "/rules/sets", ``, "listing rule sets: shanhai: kv_list: denied"},
	} {
		status, body := do(t, tc.method, tc.target, tc.body)
		if status != 500 || !strings.Contains(body, tc.want) {
			t.Errorf("%s %s: %d %s", tc.method, tc.target, status, body)
		}
	}
	logs := shanhaitest.Logs()
	if last := logs[len(logs)-1]; last.Level != 4 || !strings.Contains(last.Text, "denied") {
		t.Errorf("last log line: %+v", last)
	}
}
