//go:build tools

// Package tools pins the upstream commands that testenv/build compiles, so `go mod tidy` keeps them in go.mod.
package tools

import (
	_ "k8s.io/kubernetes/cmd/kube-apiserver"
)
