// Command probe is the test image for tests/k8s/test_real_node.py: one static binary
// whose arguments are steps run in order, each printing what a test asserts on.
//
//	exit=N       exit with code N
//	print=TEXT   print TEXT
//	id           print "uid=U gid=G"
//	write=PATH   try to write PATH; print "write PATH ok" or "write PATH failed: ..."
//	oom          allocate and touch memory until the kernel kills the process
//	serve=PORT   answer HTTP on PORT with "hello from <hostname>" (never returns)
//	get=URL      GET URL (retrying for up to 60 s) and print the body; exit 1 if never
//	tcp=ADDR     connect to host:port (retrying for up to 60 s); print "tcp ADDR ok"
//	redis-ping=ADDR  send PING to the Redis at host:port; print its reply (+PONG)
//	sleep=SECS   sleep
//
// Static (CGO_ENABLED=0): Go's own resolver reads the pod's /etc/resolv.conf, so a
// Service's short name resolves through the cluster DNS and its search domains.
package main

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"time"
)

func main() {
	for _, step := range os.Args[1:] {
		name, value, _ := strings.Cut(step, "=")
		switch name {
		case "exit":
			code, err := strconv.Atoi(value)
			if err != nil {
				fail("bad exit code %q", value)
			}
			os.Exit(code)
		case "print":
			fmt.Println(value)
		case "id":
			fmt.Printf("uid=%d gid=%d\n", os.Getuid(), os.Getgid())
		case "write":
			if err := os.WriteFile(value, []byte("probe\n"), 0o644); err != nil {
				fmt.Printf("write %s failed: %v\n", value, err)
			} else {
				fmt.Printf("write %s ok\n", value)
			}
		case "oom":
			allocateForever()
		case "serve":
			serve(value)
		case "get":
			get(value)
		case "tcp":
			dial(value)
		case "redis-ping":
			redisPing(value)
		case "sleep":
			seconds, err := strconv.ParseFloat(value, 64)
			if err != nil {
				fail("bad sleep %q", value)
			}
			time.Sleep(time.Duration(seconds * float64(time.Second)))
		default:
			fail("unknown step %q", step)
		}
	}
}

func fail(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "probe: "+format+"\n", args...)
	os.Exit(2)
}

// allocateForever touches every page it allocates, so the memory is really resident and
// a memory limit ends in the kernel's OOM kill (exit 137), not in a Go panic.
func allocateForever() {
	const chunk = 8 << 20
	var held [][]byte
	for {
		block := make([]byte, chunk)
		for i := 0; i < len(block); i += 4096 {
			block[i] = 1
		}
		held = append(held, block)
		if len(held)%4 == 0 {
			fmt.Printf("allocated %d MiB\n", len(held)*chunk>>20)
		}
	}
}

func serve(port string) {
	host, _ := os.Hostname()
	http.HandleFunc("/", func(w http.ResponseWriter, _ *http.Request) {
		fmt.Fprintf(w, "hello from %s\n", host)
	})
	fmt.Printf("serving on :%s\n", port)
	if err := http.ListenAndServe(":"+port, nil); err != nil {
		fail("serve: %v", err)
	}
}

// get retries because a new Service needs a moment (endpoints, kube-proxy rules) before
// it answers; each failed attempt is logged to stderr for the test's failure output.
func get(url string) {
	client := http.Client{Timeout: 5 * time.Second}
	deadline := time.Now().Add(60 * time.Second)
	for {
		body, err := fetch(&client, url)
		if err == nil {
			fmt.Print(body)
			return
		}
		fmt.Fprintf(os.Stderr, "get %s: %v\n", url, err)
		if time.Now().After(deadline) {
			os.Exit(1)
		}
		time.Sleep(500 * time.Millisecond)
	}
}

func fetch(client *http.Client, url string) (string, error) {
	reply, err := client.Get(url)
	if err != nil {
		return "", err
	}
	defer reply.Body.Close()
	body, err := io.ReadAll(reply.Body)
	if err != nil {
		return "", err
	}
	if reply.StatusCode != http.StatusOK {
		return "", fmt.Errorf("status %d", reply.StatusCode)
	}
	return string(body), nil
}

func dial(address string) {
	deadline := time.Now().Add(60 * time.Second)
	for {
		conn, err := net.DialTimeout("tcp", address, 5*time.Second)
		if err == nil {
			conn.Close()
			fmt.Printf("tcp %s ok\n", address)
			return
		}
		fmt.Fprintf(os.Stderr, "tcp %s: %v\n", address, err)
		if time.Now().After(deadline) {
			os.Exit(1)
		}
		time.Sleep(500 * time.Millisecond)
	}
}

func redisPing(address string) {
	conn, err := net.DialTimeout("tcp", address, 10*time.Second)
	if err != nil {
		fail("redis-ping %s: %v", address, err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := conn.Write([]byte("PING\r\n")); err != nil {
		fail("redis-ping %s: %v", address, err)
	}
	reply, err := bufio.NewReader(conn).ReadString('\n')
	if err != nil {
		fail("redis-ping %s: %v", address, err)
	}
	fmt.Printf("redis %s replied %s\n", address, strings.TrimSpace(reply))
}
