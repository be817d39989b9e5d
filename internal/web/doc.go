// Package web owns the browser side of Meterflow: the household portal
// (served at /) and the operator dashboard (at /operator/), as static HTML,
// CSS and plain ES modules embedded in the binary. It owns no data: every
// figure comes from the JSON API under /api/v1, which the pages call with
// the session cookie and the CSRF header.
//
// There is no JavaScript build step (docs/web.md says why): the files under
// static/ are what the browser runs. Assets are served under a path that
// carries a hash of their content, so they are cached for a year and a new
// release is fetched at once; the two HTML pages are revalidated on every
// load. Every response carries a strict Content-Security-Policy: scripts,
// styles and connections from this origin only, and no inline script.
package web
