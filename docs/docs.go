// Package docs embeds the documents the server itself serves: the OpenAPI
// description of the JSON API.
package docs

import _ "embed"

// OpenAPI is docs/openapi.yaml, served at /api/v1/openapi.yaml.
//
//go:embed openapi.yaml
var OpenAPI []byte
