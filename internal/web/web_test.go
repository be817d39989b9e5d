package web

import (
	"io"
	"io/fs"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func get(t *testing.T, h http.Handler, method, path string, hdr map[string]string) *http.Response {
	t.Helper()
	req := httptest.NewRequest(method, path, nil)
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	return rec.Result()
}

func body(t *testing.T, r *http.Response) string {
	b, err := io.ReadAll(r.Body)
	require.NoError(t, err)
	return string(b)
}

func TestPagesAndAssets(t *testing.T) {
	h := New()
	require.Len(t, h.Version(), 12)
	for path, script := range map[string]string{"/": "portal.js", "/operator/": "operator.js"} {
		r := get(t, h, "GET", path, nil)
		require.Equal(t, http.StatusOK, r.StatusCode, path)
		assert.Equal(t, CSP, r.Header.Get("Content-Security-Policy"))
		assert.Equal(t, "nosniff", r.Header.Get("X-Content-Type-Options"))
		assert.Equal(t, "no-cache", r.Header.Get("Cache-Control"), "pages are revalidated")
		assert.Contains(t, r.Header.Get("Content-Type"), "text/html")
		b := body(t, r)
		assert.Contains(t, b, `src="/assets/`+h.Version()+`/`+script+`"`)
		assert.NotContains(t, b, "{{ASSETS}}")

		etag := r.Header.Get("ETag")
		require.NotEmpty(t, etag)
		assert.Equal(t, http.StatusNotModified, get(t, h, "GET", path, map[string]string{"If-None-Match": etag}).StatusCode)
	}

	r := get(t, h, "GET", "/assets/"+h.Version()+"/portal.js", nil)
	require.Equal(t, http.StatusOK, r.StatusCode)
	assert.Equal(t, "public, max-age=31536000, immutable", r.Header.Get("Cache-Control"))
	assert.Equal(t, "text/javascript; charset=utf-8", r.Header.Get("Content-Type"))
	assert.Equal(t, CSP, r.Header.Get("Content-Security-Policy"))

	r = get(t, h, "GET", "/assets/000000000000/style.css", nil)
	assert.Equal(t, http.StatusOK, r.StatusCode, "a page of an older release still gets its assets")
	assert.Equal(t, "no-cache", r.Header.Get("Cache-Control"), "but not for long")
	assert.Contains(t, r.Header.Get("Content-Type"), "text/css")

	assert.Equal(t, http.StatusNotFound, get(t, h, "GET", "/assets/"+h.Version()+"/nope.js", nil).StatusCode)
	assert.Equal(t, http.StatusNotFound, get(t, h, "GET", "/nothing-here", nil).StatusCode)
	assert.Equal(t, http.StatusMethodNotAllowed, get(t, h, "POST", "/", nil).StatusCode)
	r = get(t, h, "GET", "/operator", nil)
	assert.Equal(t, http.StatusMovedPermanently, r.StatusCode)
	assert.Equal(t, "/operator/", r.Header.Get("Location"))
}

// The CSP forbids inline script and style; the pages must not need them,
// and the scripts build the DOM from text, never from HTML strings.
func TestNoInlineScriptOrStyle(t *testing.T) {
	inline := []*regexp.Regexp{
		regexp.MustCompile(`<script(?:\s[^>]*)?>\s*[^<\s]`), // a script with a body
		regexp.MustCompile(`<script(?:(?:\s[^>]*)?)>`),      // checked below for src
		regexp.MustCompile(`\son[a-z]+\s*=`),                // event handler attributes
		regexp.MustCompile(`\sstyle\s*=`),                   // style attributes
		regexp.MustCompile(`<style`),
		regexp.MustCompile(`javascript:`),
	}
	for _, page := range []string{"static/portal.html", "static/operator.html"} {
		b, err := static.ReadFile(page)
		require.NoError(t, err)
		s := string(b)
		assert.NotRegexp(t, inline[0], s, page)
		for _, tag := range inline[1].FindAllString(s, -1) {
			assert.Contains(t, tag, `src=`, "%s: %s", page, tag)
		}
		for _, re := range inline[2:] {
			assert.NotRegexp(t, re, s, page)
		}
	}
	imports := regexp.MustCompile(`from '\./([a-z]+\.js)'`)
	err := fs.WalkDir(static, "static/assets", func(p string, d fs.DirEntry, err error) error {
		if err != nil || !strings.HasSuffix(p, ".js") {
			return err
		}
		b, err := static.ReadFile(p)
		require.NoError(t, err)
		s := string(b)
		for _, bad := range []string{"innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval(", "new Function", "setAttribute('style'"} {
			assert.NotContains(t, s, bad, p)
		}
		for _, m := range imports.FindAllStringSubmatch(s, -1) {
			_, err := static.ReadFile("static/assets/" + m[1])
			assert.NoError(t, err, "%s imports %s", p, m[1])
		}
		return nil
	})
	require.NoError(t, err)
}
