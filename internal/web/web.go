package web

import (
	"bytes"
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"io/fs"
	"mime"
	"net/http"
	"path"
	"sort"
	"strings"
	"time"
)

//go:embed static
var static embed.FS

// CSP is the Content-Security-Policy of every page and asset. It admits no
// inline script or style, no other origin, and no framing.
const CSP = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; " +
	"font-src 'self'; manifest-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"

// asset is one embedded file, ready to serve.
type asset struct {
	body  []byte
	etag  string
	ctype string
}

// Handler serves the portal and the dashboard. It is safe for concurrent
// use; everything is read from the binary once, when it is built.
type Handler struct {
	version string
	pages   map[string]asset // by request path: "/" and "/operator/"
	assets  map[string]asset // by name under static/assets
}

// AssetPrefix is where assets live; the version segment follows it.
const AssetPrefix = "/assets/"

// New builds the handler from the embedded files.
func New() *Handler {
	h := &Handler{pages: map[string]asset{}, assets: map[string]asset{}}
	sum := sha256.New()
	var names []string
	_ = fs.WalkDir(static, "static/assets", func(p string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			names = append(names, p)
		}
		return err
	})
	sort.Strings(names)
	for _, p := range names {
		b, _ := static.ReadFile(p)
		sum.Write([]byte(p))
		sum.Write(b)
		h.assets[strings.TrimPrefix(p, "static/assets/")] = newAsset(p, b)
	}
	h.version = hex.EncodeToString(sum.Sum(nil))[:12]
	for route, file := range map[string]string{"/": "static/portal.html", "/operator/": "static/operator.html"} {
		b, _ := static.ReadFile(file)
		b = bytes.ReplaceAll(b, []byte("{{ASSETS}}"), []byte(AssetPrefix+h.version))
		h.pages[route] = newAsset(file, b)
	}
	return h
}

func newAsset(name string, b []byte) asset {
	s := sha256.Sum256(b)
	ct := mime.TypeByExtension(path.Ext(name))
	if strings.HasSuffix(name, ".js") {
		ct = "text/javascript; charset=utf-8"
	}
	return asset{body: b, etag: `"` + hex.EncodeToString(s[:8]) + `"`, ctype: ct}
}

// Version is the hash of the embedded assets, part of their URLs.
func (h *Handler) Version() string { return h.version }

// Routes are the patterns to mount the handler on (httpapi.Server.Handle).
// Plain paths without a method: a method would overlap ambiguously with
// the API's own catch-all under /api/v1/.
var Routes = []string{"/", "/operator/"}

// ServeHTTP serves a page, an asset, or 404.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	hdr := w.Header()
	hdr.Set("Content-Security-Policy", CSP)
	hdr.Set("X-Content-Type-Options", "nosniff")
	hdr.Set("Referrer-Policy", "same-origin")
	hdr.Set("Cross-Origin-Opener-Policy", "same-origin")
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		hdr.Set("Allow", "GET, HEAD")
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	p := r.URL.Path
	if p == "/operator" {
		http.Redirect(w, r, "/operator/", http.StatusMovedPermanently)
		return
	}
	if a, ok := h.pages[p]; ok {
		// Pages are small and name the current assets: revalidate each time.
		hdr.Set("Cache-Control", "no-cache")
		serve(w, r, a)
		return
	}
	if rest, ok := strings.CutPrefix(p, AssetPrefix); ok {
		version, name, _ := strings.Cut(rest, "/")
		if a, ok := h.assets[name]; ok {
			if version == h.version {
				hdr.Set("Cache-Control", "public, max-age=31536000, immutable")
			} else {
				// A page of an older release: serve what there is now,
				// but do not let it stick.
				hdr.Set("Cache-Control", "no-cache")
			}
			serve(w, r, a)
			return
		}
	}
	hdr.Set("Cache-Control", "no-store")
	http.NotFound(w, r)
}

func serve(w http.ResponseWriter, r *http.Request, a asset) {
	w.Header().Set("Content-Type", a.ctype)
	w.Header().Set("ETag", a.etag)
	http.ServeContent(w, r, "", time.Time{}, bytes.NewReader(a.body))
}
