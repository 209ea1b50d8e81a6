// Command etcd is the real etcd server (go.etcd.io/etcd/server/v3), built here so the test control plane needs no
// download of a prebuilt binary.
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() {
	etcdmain.Main(os.Args)
}
