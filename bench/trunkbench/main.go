// Command trunkbench measures the XDS registrations: a xivo node's trunk
// client registering to 20 MDS registrars on loopback (UDP and TCP, digest
// authentication), from the moment the services are up (Register called)
// until every MDS answered 200, and from Stop (Unregister called) until
// every binding is gone. The peer, measured in the same run, is the same
// client registering to the 20 MDS one after the other, as a loop over the
// MDS list would: the ratio shows what doing them in parallel buys.
//
//	go run ./bench/trunkbench [-mds 20] [-rounds 20]
//
// Traffic stays on 127.0.0.40-59; every loop is bounded in count.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"slices"
	"time"

	"github.com/xivo-resilience/resilience/internal/mds"
	"github.com/xivo-resilience/resilience/internal/trunk"
)

func main() {
	n := flag.Int("mds", 20, "number of MDS")
	rounds := flag.Int("rounds", 20, "register/unregister rounds per variant")
	flag.Parse()
	if err := run(*n, *rounds); err != nil {
		fmt.Fprintln(os.Stderr, "trunkbench:", err)
		os.Exit(1)
	}
}

func run(n, rounds int) error {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	var regs []trunk.Registration
	var registrars []*mds.Registrar
	defer func() {
		for _, r := range registrars {
			r.Close()
		}
	}()
	for i := range n {
		ip := fmt.Sprintf("127.0.0.%d", 40+i)
		r, err := mds.New(mds.Options{Name: fmt.Sprintf("mds-%d", i+1), UDP: ip + ":0", TCP: ip + ":0",
			Users: map[string]string{"xivo-trunk": "bench-password"}, Logger: quiet})
		if err != nil {
			return err
		}
		if err := r.Start(ctx); err != nil {
			return err
		}
		registrars = append(registrars, r)
		addr, transport := r.UDPAddr(), "udp"
		if i%2 == 1 {
			addr, transport = r.TCPAddr(), "tcp"
		}
		regs = append(regs, trunk.Registration{Name: fmt.Sprintf("mds-%d", i+1), Registrar: "sip:" + addr + ";transport=" + transport,
			Username: "xivo-trunk", Password: "bench-password", Expiry: 300 * time.Second})
	}
	bound := func(want int) bool {
		for _, r := range registrars {
			if len(r.Bindings()) != want {
				return false
			}
		}
		return true
	}
	measure := func(variant string, clients []*trunk.Client) (reg, unreg []time.Duration, err error) {
		for range rounds {
			begun := time.Now()
			for _, c := range clients {
				if err := c.Register(ctx); err != nil {
					return nil, nil, fmt.Errorf("%s: register: %w", variant, err)
				}
			}
			reg = append(reg, time.Since(begun))
			if !bound(1) {
				return nil, nil, fmt.Errorf("%s: not every MDS holds the binding", variant)
			}
			begun = time.Now()
			for _, c := range clients {
				if err := c.Unregister(ctx); err != nil {
					return nil, nil, fmt.Errorf("%s: unregister: %w", variant, err)
				}
			}
			unreg = append(unreg, time.Since(begun))
			if !bound(0) {
				return nil, nil, fmt.Errorf("%s: a binding is left after Unregister", variant)
			}
		}
		return reg, unreg, nil
	}

	all, err := trunk.New(trunk.Options{Node: "xivo-main", LocalIP: "127.0.0.2", Registrations: regs, Logger: quiet})
	if err != nil {
		return err
	}
	defer all.Close()
	var one []*trunk.Client
	for _, r := range regs {
		c, err := trunk.New(trunk.Options{Node: "xivo-main", LocalIP: "127.0.0.2", Registrations: []trunk.Registration{r}, Logger: quiet})
		if err != nil {
			return err
		}
		defer c.Close()
		one = append(one, c)
	}
	preg, punreg, err := measure("parallel", []*trunk.Client{all})
	if err != nil {
		return err
	}
	sreg, sunreg, err := measure("one after the other", one)
	if err != nil {
		return err
	}
	ok := pct(preg, 100) < 300*time.Millisecond && pct(punreg, 100) < 300*time.Millisecond
	verdict := "FAIL"
	if ok {
		verdict = "PASS"
	}
	fmt.Printf("xds_register: %d MDS, %d rounds | parallel: register p50 %s max %s, unregister p50 %s max %s | one after the other: register p50 %s, unregister p50 %s | x%.2f (target: all within 300ms) %s\n",
		n, rounds, ms(pct(preg, 50)), ms(pct(preg, 100)), ms(pct(punreg, 50)), ms(pct(punreg, 100)),
		ms(pct(sreg, 50)), ms(pct(sunreg, 50)), float64(pct(preg, 50))/float64(pct(sreg, 50)), verdict)
	return nil
}

func pct(ds []time.Duration, p float64) time.Duration {
	s := slices.Clone(ds)
	slices.Sort(s)
	i := int(float64(len(s)-1) * p / 100)
	return s[i]
}

func ms(d time.Duration) string { return fmt.Sprintf("%.1fms", float64(d)/float64(time.Millisecond)) }
