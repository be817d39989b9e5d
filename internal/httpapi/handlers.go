package httpapi

// What handlers share beyond wrap: how they start (opening: the service is
// enabled, then whose household, the path id and the JSON body) and how
// they answer (answer, items, noContent).

import (
	"net/http"

	"github.com/meterflow/meterflow/internal/auth"
)

// input is what a handler reads from its request before it acts, in this
// order: whose household the request is for, the numeric id in its path,
// and its JSON body. The order fixes which problem a request with several
// is told about.
type input struct {
	// who names the household the request acts for (householdOnly,
	// alertHousehold); nil reads none.
	who func(*http.Request, *auth.Principal) (int64, error)
	// param is the path parameter holding the id ("payment", "alert");
	// empty reads none. A malformed id is "not found".
	param string
	// body receives the JSON body (decode: unknown fields and trailing
	// data refused, the server's size limit applies); nil reads none. A
	// body with a check method is checked after decoding, for the fields
	// it requires.
	body any
	// bodyOptional takes a request without a body (Content-Length 0) as
	// leaving body as it was.
	bodyOptional bool
}

// checker is a request body that checks its own required fields.
type checker interface {
	check() error
}

// opening is how alert and payment handlers start: the service must be
// enabled on this server (svc answers "unavailable" when not), then in is
// read. It returns the service, the household and the path id; the first
// problem found is the error.
func opening[S any](svc func() (S, error), r *http.Request, p *auth.Principal, in input) (s S, hh, id int64, err error) {
	fail := func(err error) (S, int64, int64, error) {
		var zero S
		return zero, 0, 0, err
	}
	if s, err = svc(); err != nil {
		return fail(err)
	}
	if in.who != nil {
		if hh, err = in.who(r, p); err != nil {
			return fail(err)
		}
	}
	if in.param != "" {
		if id, err = pathID(r, in.param); err != nil {
			return fail(err)
		}
	}
	if in.body != nil && !(in.bodyOptional && r.ContentLength == 0) {
		if err := decode(r, in.body); err != nil {
			return fail(err)
		}
		if c, ok := in.body.(checker); ok {
			if err := c.check(); err != nil {
				return fail(err)
			}
		}
	}
	return s, hh, id, nil
}

// answer writes v with status, or returns err.
func answer[T any](w http.ResponseWriter, status int, v T, err error) error {
	if err != nil {
		return err
	}
	writeJSON(w, status, v)
	return nil
}

// items wraps a list as {"items": [...]}, never null.
func items[T any](xs []T, err error) (map[string]any, error) {
	if xs == nil {
		xs = []T{}
	}
	return map[string]any{"items": xs}, err
}

// noContent answers 204, or returns err.
func noContent(w http.ResponseWriter, err error) error {
	if err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}
