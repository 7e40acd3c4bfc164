package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
)

// runCache prints what an operator asks of the cache: the hit ratio, how
// many keys usher holds and how much memory Redis uses.
func runCache(ctx context.Context, cfg config, args []string, stdout io.Writer) error {
	if len(args) != 1 || args[0] != "stats" {
		return errors.New("usage: usher cache stats")
	}
	rdb, err := connectRedis(ctx, cfg)
	if err != nil {
		return err
	}
	defer rdb.Close()
	info, err := rdb.Info(ctx, "stats", "memory").Result()
	if err != nil {
		return fmt.Errorf("redis INFO: %w", err)
	}
	fields := map[string]string{}
	for _, line := range strings.Split(info, "\r\n") {
		if k, v, ok := strings.Cut(line, ":"); ok {
			fields[k] = v
		}
	}
	hits, _ := strconv.ParseFloat(fields["keyspace_hits"], 64)
	misses, _ := strconv.ParseFloat(fields["keyspace_misses"], 64)
	ratio := 0.0
	if hits+misses > 0 {
		ratio = hits / (hits + misses)
	}
	var keys int64
	iter := rdb.Scan(ctx, 0, cfg.Namespace+":*", 1000).Iterator()
	for iter.Next(ctx) {
		keys++
	}
	if err := iter.Err(); err != nil {
		return fmt.Errorf("redis SCAN: %w", err)
	}
	fmt.Fprintf(stdout, "hit ratio        %.1f%% (%0.f hits, %0.f misses; whole Redis server since its start)\n", 100*ratio, hits, misses)
	fmt.Fprintf(stdout, "keys under %s:*  %d\n", cfg.Namespace, keys)
	fmt.Fprintf(stdout, "memory           %s used, maxmemory %s, policy %s\n",
		fields["used_memory_human"], fields["maxmemory_human"], fields["maxmemory_policy"])
	return nil
}
