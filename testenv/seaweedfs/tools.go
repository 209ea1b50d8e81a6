//go:build tools

// Package tools pins the S3-compatible server (SeaweedFS's `weed`) that testenv/build compiles for the artifact tests,
// so `go mod tidy` keeps it in go.mod. A module of its own: its dependencies must not move the control plane's.
package tools

import (
	_ "github.com/seaweedfs/seaweedfs/weed"
)
