package httpapi

import (
	"encoding/json"
	"errors"
	"io"
	"mime"
	"net/http"
	"strings"
	"time"

	"github.com/meterflow/meterflow/internal/apperr"
	"github.com/meterflow/meterflow/internal/auth"
	"github.com/meterflow/meterflow/internal/portal"
	"github.com/meterflow/meterflow/internal/tariff"
)

// tariffRoutes are the tariffs: anyone signed in reads them, operators load
// them.
func (a *api) tariffRoutes() []Route {
	return []Route{
		{Method: "GET", Pattern: "/tariffs", Rule: SignedIn, Scope: ScopeTariffsRead, Summary: "Tariffs (latest revision of each)", handler: a.listTariffs},
		{Method: "GET", Pattern: "/tariffs/{tariff}", Rule: SignedIn, Scope: ScopeTariffsRead, Summary: "One tariff with its versions and revisions", handler: a.getTariff},
		{Method: "POST", Pattern: "/tariffs", Rule: Operator, Scope: ScopeTariffsWrite, Summary: "Load a tariff file (YAML or JSON) as the next revision of its code", handler: a.loadTariff},
	}
}

// maxTariffCode bounds a tariff code in a path or cursor.
const maxTariffCode = 100

func (a *api) listTariffs(w http.ResponseWriter, r *http.Request, _ *auth.Principal) error {
	limit, after, err := pageParams(r)
	if err != nil {
		return err
	}
	if len(after) > maxTariffCode {
		return apperr.Field("after", "not a cursor from this list")
	}
	ts, err := a.cfg.Portal.Tariffs(r.Context(), after, limit+1)
	if err != nil {
		return err
	}
	writePage(w, ts, limit, func(x portal.Tariff) string { return x.Code })
	return nil
}

func (a *api) getTariff(w http.ResponseWriter, r *http.Request, _ *auth.Principal) error {
	code := r.PathValue("tariff")
	if code == "" || len(code) > maxTariffCode {
		return apperr.New(apperr.NotFound, "tariff %q not found", code)
	}
	t, err := a.cfg.Portal.Tariff(r.Context(), code)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, t)
	return nil
}

type loadTariffResponse struct {
	Code     string    `json:"code"`
	Revision int       `json:"revision"`
	Created  bool      `json:"created"`
	Utility  string    `json:"utility"`
	Currency string    `json:"currency"`
	Versions int       `json:"versions"`
	LoadedAt time.Time `json:"loaded_at"`
}

// loadTariff takes a tariff file, as `meterflow tariffs load` does: YAML
// (application/yaml) or JSON (application/json). Loading the same file
// again changes nothing and answers 200 with created false; a new or
// changed one answers 201 with its revision.
func (a *api) loadTariff(w http.ResponseWriter, r *http.Request, _ *auth.Principal) error {
	mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if err != nil {
		mt = ""
	}
	var isJSON bool
	switch mt {
	case "application/json":
		isJSON = true
	case "application/yaml", "application/x-yaml", "text/yaml", "text/x-yaml":
	default:
		return apperr.Field("Content-Type", "want application/yaml or application/json")
	}
	data, err := io.ReadAll(r.Body)
	if err != nil {
		return err
	}
	if isJSON && !json.Valid(data) {
		return apperr.Field("body", "not valid JSON")
	}
	st, created, err := a.cfg.Bills.LoadTariff(r.Context(), data)
	if err != nil {
		return tariffRefused(err)
	}
	status := http.StatusOK
	if created {
		status = http.StatusCreated
	}
	writeJSON(w, status, loadTariffResponse{Code: st.Code, Revision: st.Revision, Created: created, Utility: string(st.Utility),
		Currency: st.Currency, Versions: len(st.Versions), LoadedAt: st.LoadedAt})
	return nil
}

// tariffRefused turns the tariff parser's field errors into one Invalid
// error naming the first field and listing every problem.
func tariffRefused(err error) error {
	if !errors.Is(err, tariff.ErrInvalid) {
		return err
	}
	var probs []string
	field := ""
	for _, e := range leaves(err) {
		var fe *tariff.FieldError
		if errors.As(e, &fe) {
			if field == "" && fe.Path != "" {
				field = fe.Path
			}
			probs = append(probs, fe.Error())
		}
	}
	if len(probs) == 0 {
		return &apperr.Error{Code: apperr.Invalid, Message: "tariff refused", Err: err}
	}
	return &apperr.Error{Code: apperr.Invalid, Field: field, Message: "tariff refused: " + strings.Join(probs, "; "), Err: err}
}

// firstField turns joined field errors into one Invalid error naming the
// first field and listing every problem.
func firstField(err error) error {
	var fields []*apperr.Error
	for _, e := range leaves(err) {
		var ae *apperr.Error
		if !errors.As(e, &ae) || ae.Code != apperr.Invalid {
			return err
		}
		fields = append(fields, ae)
	}
	if len(fields) < 2 {
		return err
	}
	msgs := make([]string, len(fields))
	for i, f := range fields {
		msgs[i] = f.Field + ": " + f.Message
	}
	return &apperr.Error{Code: apperr.Invalid, Field: fields[0].Field, Message: strings.Join(msgs, "; ")}
}

// leaves flattens errors.Join trees (and wrappers of them) into their
// leaves.
func leaves(err error) []error {
	if err == nil {
		return nil
	}
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		var out []error
		for _, e := range j.Unwrap() {
			out = append(out, leaves(e)...)
		}
		return out
	}
	if u := errors.Unwrap(err); u != nil {
		if _, ok := u.(interface{ Unwrap() []error }); ok {
			return leaves(u)
		}
	}
	return []error{err}
}
