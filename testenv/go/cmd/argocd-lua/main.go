// Command argocd-lua runs Rampart's Argo CD resource customizations (deploy/argocd) the way Argo CD runs them: with
// gopher-lua, the interpreter Argo CD embeds, and only the libraries Argo CD opens for customization scripts (package,
// base, table and a reduced os; no string or math library), with the object in the global `obj`.
//
//	argocd-lua health    SCRIPT OBJECT.json   prints {"status": ..., "message": ...}
//	argocd-lua discovery SCRIPT OBJECT.json   prints the table of actions the script offers
//	argocd-lua action    SCRIPT OBJECT.json   prints the object the action returns
//
// The object files hold one Kubernetes object as JSON. Errors go to stderr with exit status 1.
package main

import (
	"encoding/json"
	"fmt"
	"os"
	"time"

	lua "github.com/yuin/gopher-lua"
)

func main() {
	if len(os.Args) != 4 {
		fmt.Fprintln(os.Stderr, "usage: argocd-lua health|discovery|action SCRIPT OBJECT.json")
		os.Exit(2)
	}
	out, err := run(os.Args[1], os.Args[2], os.Args[3])
	if err != nil {
		fmt.Fprintln(os.Stderr, "argocd-lua:", err)
		os.Exit(1)
	}
	fmt.Println(string(out))
}

func run(mode, scriptPath, objectPath string) ([]byte, error) {
	script, err := os.ReadFile(scriptPath)
	if err != nil {
		return nil, err
	}
	raw, err := os.ReadFile(objectPath)
	if err != nil {
		return nil, err
	}
	var object map[string]any
	if err := json.Unmarshal(raw, &object); err != nil {
		return nil, fmt.Errorf("%s is not a JSON object: %w", objectPath, err)
	}

	state := lua.NewState(lua.Options{SkipOpenLibs: true})
	defer state.Close()
	for _, lib := range []struct {
		name string
		open lua.LGFunction
	}{
		{lua.LoadLibName, lua.OpenPackage},
		{lua.BaseLibName, lua.OpenBase},
		{lua.TabLibName, lua.OpenTable},
	} {
		if err := state.CallByParam(lua.P{Fn: state.NewFunction(lib.open), NRet: 0, Protect: true}, lua.LString(lib.name)); err != nil {
			return nil, err
		}
	}
	openSafeOs(state)
	state.SetGlobal("obj", toLua(state, object))

	done := make(chan struct{})
	defer close(done)
	go func() {
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			state.Close() // Argo CD also bounds a script's run time
		}
	}()
	if err := state.DoString(string(script)); err != nil {
		return nil, err
	}
	result := state.Get(-1)
	table, ok := result.(*lua.LTable)
	if !ok {
		return nil, fmt.Errorf("the %s script returned %s, not a table", mode, result.Type())
	}
	value := fromLua(table)
	switch mode {
	case "health":
		health, ok := value.(map[string]any)
		if !ok {
			return nil, fmt.Errorf("the health script returned a list, not {status=..., message=...}")
		}
		status, _ := health["status"].(string)
		switch status {
		case "Healthy", "Progressing", "Degraded", "Suspended", "Missing", "Unknown":
		default:
			return nil, fmt.Errorf("the health script returned status %q, which Argo CD does not know", status)
		}
	case "discovery", "action":
	default:
		return nil, fmt.Errorf("unknown mode %q (health, discovery or action)", mode)
	}
	return json.MarshalIndent(value, "", "  ")
}

// openSafeOs gives scripts the part of the os library Argo CD allows: time and date, nothing that touches the system.
func openSafeOs(state *lua.LState) {
	os := state.NewTable()
	state.SetFuncs(os, map[string]lua.LGFunction{
		"time": func(l *lua.LState) int {
			l.Push(lua.LNumber(time.Now().Unix()))
			return 1
		},
		"date": func(l *lua.LState) int {
			format := l.OptString(1, "%c")
			if format == "!%Y-%m-%dT%XZ" || format == "!%Y-%m-%dT%H:%M:%SZ" {
				l.Push(lua.LString(time.Now().UTC().Format("2006-01-02T15:04:05Z")))
			} else {
				l.Push(lua.LString(time.Now().Format(time.RFC3339)))
			}
			return 1
		},
	})
	state.SetGlobal("os", os)
	state.PreloadModule("os", func(l *lua.LState) int {
		l.Push(os)
		return 1
	})
}

func toLua(state *lua.LState, value any) lua.LValue {
	switch v := value.(type) {
	case nil:
		return lua.LNil
	case bool:
		return lua.LBool(v)
	case float64:
		return lua.LNumber(v)
	case string:
		return lua.LString(v)
	case []any:
		table := state.NewTable()
		for _, item := range v {
			table.Append(toLua(state, item))
		}
		return table
	case map[string]any:
		table := state.NewTable()
		for key, item := range v {
			table.RawSetString(key, toLua(state, item))
		}
		return table
	default:
		return lua.LString(fmt.Sprint(v))
	}
}

// fromLua turns a table back into JSON values: a table whose keys are exactly 1..n is a list, any other a map.
func fromLua(value lua.LValue) any {
	switch v := value.(type) {
	case *lua.LTable:
		n := v.MaxN()
		count := 0
		v.ForEach(func(_, _ lua.LValue) { count++ })
		if n > 0 && n == count {
			list := make([]any, 0, n)
			for i := 1; i <= n; i++ {
				list = append(list, fromLua(v.RawGetInt(i)))
			}
			return list
		}
		object := map[string]any{}
		v.ForEach(func(key, item lua.LValue) {
			object[key.String()] = fromLua(item)
		})
		return object
	case lua.LBool:
		return bool(v)
	case lua.LNumber:
		return float64(v)
	case lua.LString:
		return string(v)
	default:
		return nil
	}
}
