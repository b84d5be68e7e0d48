package cmdi

import (
	"bytes"
	"strings"
)

// class is how much evidence a command name needs.
type class uint8

const (
	notCommand class = iota
	// unambiguous names no sentence uses as a word: after a separator they
	// are an injection.
	unambiguous
	// wordlike names that are English words too (cat, find, sleep, more):
	// they need a shell-like argument.
	wordlike
)

// unambiguousCommands and wordlikeCommands are the maintained command
// lists (Unix, Windows cmd.exe and PowerShell), lower case.
var unambiguousCommands = strings.Fields(`
whoami uname ifconfig ipconfig netstat nslookup wget curl nc ncat netcat socat telnet bash sh zsh ksh csh tcsh dash
busybox powershell pwsh cmd systeminfo tasklist taskkill id ls pwd chmod chown chgrp mkfifo mknod perl python python2
python3 php ruby node lua jrunscript usleep passwd useradd usermod sudo crontab nohup xterm base64 xxd awk gawk sed
grep egrep fgrep printenv getent hostname certutil bitsadmin wmic regsvr32 rundll32 mshta cscript wscript
dir ftp tftp scp ssh sftp rsync ps killall pkill pgrep tar unzip gzip gunzip bzip2 xz locate whereis uniq xargs tee
mv cp ln rm rmdir mkdir mount umount traceroute tracert dig whois nmap reboot halt poweroff systemctl sysctl lsof strace
ltrace gdb lsb_release ifup iptables route arp chcp icacls cacls schtasks vssadmin attrib
get-content get-childitem invoke-expression iex netsh invoke-webrequest iwr start-process new-object
`)

var wordlikeCommands = strings.Fields(`
echo printf env export set find head tail more less sort cut tr wc touch file which who kill sleep timeout ping
type copy del erase ver host ip exec eval source shutdown service time date alias history od dd zip at w last uptime cat net reg
`)

// commandClass and commandName index both lists (commandName gives the
// name as a string without converting the looked-up bytes).
var commandClass, commandName = func() (map[string]class, map[string]string) {
	m, n := map[string]class{}, map[string]string{}
	for _, c := range wordlikeCommands {
		m[c], n[c] = wordlike, c
	}
	for _, c := range unambiguousCommands {
		m[c], n[c] = unambiguous, c
	}
	return m, n
}()

// lookup is the class of name, a command word with its directory and
// Windows extension removed; a name with shell glob characters (/bin/c?t)
// is matched against both lists.
func lookup(b []byte) (string, class) {
	for _, ext := range [...]string{".exe", ".bat", ".cmd"} {
		b = bytes.TrimSuffix(b, []byte(ext))
	}
	if c := commandClass[string(b)]; c != notCommand {
		return commandName[string(b)], c
	}
	if !bytes.ContainsAny(b, "?*[") {
		return "", notCommand
	}
	name := string(b)
	if len(name)-strings.Count(name, "?")-strings.Count(name, "*") >= 2 {
		for _, list := range [...][]string{unambiguousCommands, wordlikeCommands} {
			for _, c := range list {
				if glob(name, c) {
					return c, unambiguous // a glob is obfuscation already
				}
			}
		}
	}
	return "", notCommand
}

// glob matches s against a shell pattern of '?', '*' and literal bytes
// ('[' classes match any one byte). Patterns are command names: short.
func glob(p, s string) bool {
	for len(p) > 0 {
		switch p[0] {
		case '*':
			for i := len(s); i >= 0; i-- {
				if glob(p[1:], s[i:]) {
					return true
				}
			}
			return false
		case '?':
			if len(s) == 0 {
				return false
			}
		case '[':
			j := strings.IndexByte(p, ']')
			if j < 0 || len(s) == 0 {
				return false
			}
			p = p[j:]
		default:
			if len(s) == 0 || s[0] != p[0] {
				return false
			}
		}
		p, s = p[1:], s[1:]
	}
	return len(s) == 0
}
