package web

import (
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"fmt"
	"io/fs"
	"mime"
	"path"
	"strings"
)

//go:embed templates/*.html
var templateFS embed.FS

//go:embed static/*
var staticFS embed.FS

// asset is one static file, served under a name that holds its checksum
// (app.3f2a9c01b4de.css), so that browsers may keep it for a year and
// still get a new file with a new binary.
type asset struct {
	url   string
	ctype string
	body  []byte
	etag  string
}

// assets are the static files by their checksummed name, and the URL of
// each by its plain name, for the templates.
type assets struct {
	byName map[string]*asset
	urls   map[string]string
}

func loadAssets(fsys fs.FS) (*assets, error) {
	a := &assets{byName: map[string]*asset{}, urls: map[string]string{}}
	err := fs.WalkDir(fsys, "static", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		body, err := fs.ReadFile(fsys, p)
		if err != nil {
			return err
		}
		sum := sha256.Sum256(body)
		short := hex.EncodeToString(sum[:6])
		name := path.Base(p)
		ext := path.Ext(name)
		hashed := strings.TrimSuffix(name, ext) + "." + short + ext
		ctype := mime.TypeByExtension(ext)
		if ctype == "" {
			ctype = "application/octet-stream"
		}
		a.byName[hashed] = &asset{url: "/static/" + hashed, ctype: ctype, body: body, etag: `"` + short + `"`}
		a.urls[name] = "/static/" + hashed
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("web: static files: %w", err)
	}
	for _, need := range []string{"app.css", "app.js", "icon.svg"} {
		if _, ok := a.urls[need]; !ok {
			return nil, fmt.Errorf("web: static file %s is missing", need)
		}
	}
	return a, nil
}

// url returns the checksummed URL of a static file; templates call it, and
// an unknown name fails the template at start-up rather than a 404 later.
func (a *assets) url(name string) (string, error) {
	u, ok := a.urls[name]
	if !ok {
		return "", fmt.Errorf("no static file %q", name)
	}
	return u, nil
}
