//go:build tools

// Package tools pins the upstream commands that testenv/build compiles (kube-apiserver, and kubectl from the same
// Kubernetes modules), so `go mod tidy` keeps them in go.mod.
package tools

import (
	_ "k8s.io/kubernetes/cmd/kube-apiserver"
	_ "k8s.io/kubernetes/cmd/kubectl"
)
