package redis

// keySpec says which arguments of a command are keys, as Redis' legacy
// key specification does (first, last, step; last < 0 counts from the
// end, -1 the last argument), or that the command is EVAL-like: the
// number of keys in argument 2, the keys after it.
type keySpec struct {
	first, last, step int
	numkeys           bool
}

var (
	noKeys   = keySpec{}
	firstKey = keySpec{first: 1, last: 1, step: 1}
	allKeys  = keySpec{first: 1, last: -1, step: 1}
	twoKeys  = keySpec{first: 1, last: 2, step: 1}
)

// keySpecs are the commands whose keys are not just their first argument.
var keySpecs = map[string]keySpec{
	// No keys.
	"ping": noKeys, "echo": noKeys, "auth": noKeys, "hello": noKeys, "select": noKeys,
	"quit": noKeys, "reset": noKeys, "info": noKeys, "config": noKeys, "client": noKeys,
	"command": noKeys, "dbsize": noKeys, "time": noKeys, "lastsave": noKeys, "role": noKeys,
	"flushall": noKeys, "flushdb": noKeys, "save": noKeys, "bgsave": noKeys, "bgrewriteaof": noKeys,
	"shutdown": noKeys, "slaveof": noKeys, "replicaof": noKeys, "sync": noKeys, "psync": noKeys,
	"monitor": noKeys, "debug": noKeys, "multi": noKeys, "exec": noKeys, "discard": noKeys,
	"unwatch": noKeys, "subscribe": noKeys, "unsubscribe": noKeys, "psubscribe": noKeys,
	"punsubscribe": noKeys, "publish": noKeys, "pubsub": noKeys, "ssubscribe": noKeys,
	"script": noKeys, "function": noKeys, "acl": noKeys, "cluster": noKeys, "module": noKeys,
	"latency": noKeys, "slowlog": noKeys, "memory": noKeys, "swapdb": noKeys, "wait": noKeys,
	"waitaof": noKeys, "failover": noKeys, "readonly": noKeys, "readwrite": noKeys, "asking": noKeys,
	"randomkey": noKeys, "scan": noKeys, "keys": noKeys, "lolwut": noKeys,
	// Every argument a key.
	"del": allKeys, "unlink": allKeys, "exists": allKeys, "touch": allKeys, "watch": allKeys,
	"mget": allKeys, "sunion": allKeys, "sinter": allKeys, "sdiff": allKeys, "sunionstore": allKeys,
	"sinterstore": allKeys, "sdiffstore": allKeys, "pfcount": allKeys, "pfmerge": allKeys,
	// Two keys.
	"rename": twoKeys, "renamenx": twoKeys, "rpoplpush": twoKeys, "smove": twoKeys,
	"copy": twoKeys, "lmove": twoKeys, "blmove": twoKeys, "brpoplpush": twoKeys,
	// Keys, then a timeout.
	"blpop": {first: 1, last: -2, step: 1}, "brpop": {first: 1, last: -2, step: 1},
	"bzpopmin": {first: 1, last: -2, step: 1}, "bzpopmax": {first: 1, last: -2, step: 1},
	// Key, value pairs.
	"mset": {first: 1, last: -1, step: 2}, "msetnx": {first: 1, last: -1, step: 2},
	// EVAL-like: script or function, number of keys, keys, arguments.
	"eval": {numkeys: true}, "evalsha": {numkeys: true}, "eval_ro": {numkeys: true},
	"evalsha_ro": {numkeys: true}, "fcall": {numkeys: true}, "fcall_ro": {numkeys: true},
}

// specOf returns the key specification of a command (lower case).
func specOf(name []byte) keySpec {
	if s, ok := keySpecs[string(name)]; ok {
		return s
	}
	return firstKey
}
