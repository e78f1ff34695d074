#!/bin/sh
# An independent EAS server with mail storage on this machine, for interop runs of easload:
# SOGo (with its ActiveSync module) over Dovecot IMAP + Postfix SMTP, users in PostgreSQL,
# every listener on 127.0.0.1.  Debian 12 (bookworm) packages; no systemd needed (the services
# are started with their own init scripts / control programs).  See deploy/sogo/README.md.
#
#   EASLOAD_SOGO_SETUP=1 sh deploy/sogo/setup.sh [install]   install, configure, start (idempotent)
#   EASLOAD_SOGO_SETUP=1 sh deploy/sogo/setup.sh start|stop|restart
#   sh deploy/sogo/setup.sh status                            what listens, where (read-only)
#
# Settings (environment): EASLOAD_SOGO_USERS (20), EASLOAD_SOGO_DOMAIN (easload.test),
# EASLOAD_SOGO_PORT (20000), EASLOAD_SOGO_WORKERS (16: one sogod child per held Ping/Sync),
# EASLOAD_SOGO_PING_MAX (300: SOGoMaximumPingInterval/SOGoMaximumSyncInterval, seconds),
# EASLOAD_SOGO_POLL (5: SOGoInternalSyncInterval, how often a held Ping looks for changes),
# EASLOAD_SOGO_DEBUG (NO: YES logs every EAS request and response to /var/log/sogo/sogo.log).
# Users: user1..userN, password "Pass<n>!" (the pattern of scenarios/sogo.toml), address
# user<n>@<domain>.  Passwords are stored in plain text: this is a throw-away lab server.
set -eu

ACTION=${1:-install}
USERS=${EASLOAD_SOGO_USERS:-20}
DOMAIN=${EASLOAD_SOGO_DOMAIN:-easload.test}
PORT=${EASLOAD_SOGO_PORT:-20000}
WORKERS=${EASLOAD_SOGO_WORKERS:-16}
PING_MAX=${EASLOAD_SOGO_PING_MAX:-300}
POLL=${EASLOAD_SOGO_POLL:-5}
DEBUG=${EASLOAD_SOGO_DEBUG:-NO}
DB_PASSWORD=easload-sogo  # the sogo database role's password (loopback only)
PG_VERSION=15
VMAIL=/var/vmail

say() { echo "setup.sh: $*"; }

status() {
    for p in 5432 11211 143 25 "$PORT"; do
        if ss -ltnH "sport = :$p" | grep -q .; then
            say "port $p: $(ss -ltnH "sport = :$p" | awk '{print $4}' | tr '\n' ' ')"
        else
            say "port $p: not listening"
        fi
    done
    # anything of ours on a non-loopback address is a configuration error
    if ss -ltnH | awk '{print $4}' | grep -E ':(5432|11211|143|993|25|4190|'"$PORT"')$' \
            | grep -vE '^(127\.|\[::1\]|::1)'; then
        say "WARNING: a service listens on a non-loopback address (above)"
        return 1
    fi
}

if [ "$ACTION" = status ]; then
    status
    exit $?
fi

if [ "${EASLOAD_SOGO_SETUP:-}" != 1 ]; then
    echo "setup.sh: this installs packages and changes system services (PostgreSQL, Dovecot, Postfix," >&2
    echo "memcached, SOGo); set EASLOAD_SOGO_SETUP=1 to confirm." >&2
    exit 2
fi
if [ "$(id -u)" != 0 ]; then
    echo "setup.sh: must run as root" >&2
    exit 2
fi

start_services() {
    install -d -o postgres -g postgres /run/postgresql
    pg_ctlcluster "$PG_VERSION" main status >/dev/null 2>&1 || pg_ctlcluster "$PG_VERSION" main start
    /etc/init.d/memcached start >/dev/null || true
    pgrep -F /run/dovecot/master.pid >/dev/null 2>&1 || dovecot
    postfix status >/dev/null 2>&1 || postfix start
    /etc/init.d/sogo start
    # wait for sogod's listener (a generous deadline; it starts in about a second)
    i=0
    until ss -ltnH "sport = :$PORT" | grep -q .; do
        i=$((i + 1))
        if [ $i -gt 60 ]; then say "sogod did not listen on :$PORT (see /var/log/sogo/sogo.log)"; exit 1; fi
        sleep 1
    done
    status
}

stop_services() {
    /etc/init.d/sogo stop || true
    postfix status >/dev/null 2>&1 && postfix stop || true
    if [ -f /run/dovecot/master.pid ]; then doveadm stop 2>/dev/null || true; fi
    /etc/init.d/memcached stop >/dev/null 2>&1 || true
    pg_ctlcluster "$PG_VERSION" main stop 2>/dev/null || true
}

case "$ACTION" in
    start) start_services; exit 0 ;;
    stop) stop_services; exit 0 ;;
    restart) stop_services; start_services; exit 0 ;;
    install) ;;
    *) echo "usage: setup.sh [install|start|stop|restart|status]" >&2; exit 2 ;;
esac

# -- packages ---------------------------------------------------------------------------------
# Postfix asks its questions through debconf: local delivery only, no relay.
echo "postfix postfix/main_mailer_type select Local only" | debconf-set-selections
echo "postfix postfix/mailname string $DOMAIN" | debconf-set-selections
PKGS="sogo sogo-activesync postgresql dovecot-imapd dovecot-lmtpd postfix memcached iproute2"
missing=""
for p in $PKGS; do
    dpkg-query -W -f '${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing="$missing $p"
done
if [ -n "$missing" ]; then
    apt-get update
    # no service starts by itself during the install (it would listen before it is configured)
    restore_policy=""
    if [ ! -e /usr/sbin/policy-rc.d ]; then
        printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d
        chmod +x /usr/sbin/policy-rc.d
        restore_policy=1
    fi
    DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends $missing
    [ -z "$restore_policy" ] || rm -f /usr/sbin/policy-rc.d
fi

# -- PostgreSQL: the sogo database; users in sogo_users (SOGo's SQL user source) ---------------
PGCONF=/etc/postgresql/$PG_VERSION/main/postgresql.conf
sed -i "s/^#\?listen_addresses *=.*/listen_addresses = '127.0.0.1'/" "$PGCONF"
install -d -o postgres -g postgres /run/postgresql
pg_ctlcluster "$PG_VERSION" main status >/dev/null 2>&1 || pg_ctlcluster "$PG_VERSION" main start
psql_() { runuser -u postgres -- psql -v ON_ERROR_STOP=1 -qtA "$@"; }
if [ -z "$(psql_ -c "SELECT 1 FROM pg_roles WHERE rolname = 'sogo'")" ]; then
    psql_ -c "CREATE ROLE sogo LOGIN PASSWORD '$DB_PASSWORD'"
fi
if [ -z "$(psql_ -c "SELECT 1 FROM pg_database WHERE datname = 'sogo'")" ]; then
    psql_ -c "CREATE DATABASE sogo OWNER sogo"
fi
psql_ -d sogo -c "CREATE TABLE IF NOT EXISTS sogo_users (c_uid varchar(128) PRIMARY KEY,
    c_name varchar(128) NOT NULL, c_password varchar(256) NOT NULL, c_cn varchar(128), mail varchar(128))"
psql_ -d sogo -c "ALTER TABLE sogo_users OWNER TO sogo"
i=1
sql=""
passwd=""
vmailbox=""
while [ $i -le "$USERS" ]; do
    sql="$sql INSERT INTO sogo_users VALUES ('user$i', 'user$i', 'Pass$i!', 'User $i', 'user$i@$DOMAIN')
        ON CONFLICT (c_uid) DO UPDATE SET c_password = EXCLUDED.c_password, mail = EXCLUDED.mail;"
    passwd="${passwd}user$i:{PLAIN}Pass$i!
"
    vmailbox="${vmailbox}user$i@$DOMAIN user$i/
"
    i=$((i + 1))
done
psql_ -d sogo -c "$sql"

# -- Dovecot: IMAP for SOGo, LMTP for Postfix, Maildir under /var/vmail -------------------------
getent group vmail >/dev/null || groupadd --system vmail
getent passwd vmail >/dev/null || useradd --system -g vmail -d "$VMAIL" -s /usr/sbin/nologin vmail
install -d -o vmail -g vmail -m 750 "$VMAIL"
printf '%s' "$passwd" > /etc/dovecot/easload-users
chown root:dovecot /etc/dovecot/easload-users
chmod 640 /etc/dovecot/easload-users
# the system (PAM) passdb off: only the lab's users
sed -i 's/^!include auth-system.conf.ext/#!include auth-system.conf.ext/' /etc/dovecot/conf.d/10-auth.conf
# no TLS on loopback: the package's certificate lines read files that a container may not have
sed -i 's/^\(ssl_cert\|ssl_key\) *=/#&/' /etc/dovecot/conf.d/10-ssl.conf
cat > /etc/dovecot/local.conf <<EOF
# written by easload deploy/sogo/setup.sh
protocols = imap lmtp
listen = 127.0.0.1
ssl = no
disable_plaintext_auth = no
auth_mechanisms = plain login
mail_location = maildir:~/Maildir
first_valid_uid = 100
passdb {
  driver = passwd-file
  args = scheme=PLAIN username_format=%n /etc/dovecot/easload-users
}
userdb {
  driver = static
  args = uid=vmail gid=vmail home=$VMAIL/%n allow_all_users=yes
}
protocol lmtp {
  auth_username_format = %Ln
}
service imap-login {
  inet_listener imaps {
    port = 0
  }
}
service lmtp {
  unix_listener /var/spool/postfix/private/dovecot-lmtp {
    mode = 0600
    user = postfix
    group = postfix
  }
}
namespace inbox {
  mailbox Drafts {
    auto = subscribe
    special_use = \Drafts
  }
  mailbox Sent {
    auto = subscribe
    special_use = \Sent
  }
  mailbox Trash {
    auto = subscribe
    special_use = \Trash
  }
}
EOF
doveconf -n >/dev/null

# -- Postfix: loopback only; the lab domain to Dovecot over LMTP; everything else discarded -----
printf '%s' "$vmailbox" > /etc/postfix/easload-vmailbox
postconf -e "inet_interfaces = 127.0.0.1" "inet_protocols = ipv4" "myhostname = mail.$DOMAIN" \
    "mydestination = localhost" "mynetworks = 127.0.0.0/8" \
    "virtual_mailbox_domains = $DOMAIN" "virtual_mailbox_maps = texthash:/etc/postfix/easload-vmailbox" \
    "virtual_transport = lmtp:unix:private/dovecot-lmtp" \
    "default_transport = discard:external recipients are not delivered in the easload lab" \
    "relayhost =" "message_size_limit = 52428800" "smtpd_tls_security_level = none" \
    "smtp_tls_security_level = none"
postfix check

# -- memcached: loopback (Debian's default configuration says -l 127.0.0.1) ---------------------
grep -q '^-l 127.0.0.1' /etc/memcached.conf || echo "-l 127.0.0.1" >> /etc/memcached.conf

# -- SOGo ------------------------------------------------------------------------------------
DB="postgresql://sogo:$DB_PASSWORD@127.0.0.1:5432/sogo"
cat > /etc/sogo/sogo.conf <<EOF
/* written by easload deploy/sogo/setup.sh */
{
  WOPort = "127.0.0.1:$PORT";
  WOWorkersCount = $WORKERS;
  WOListenQueueSize = 64;
  WOWatchDogRequestTimeout = 60;
  SOGoProfileURL = "$DB/sogo_user_profile";
  OCSFolderInfoURL = "$DB/sogo_folder_info";
  OCSSessionsFolderURL = "$DB/sogo_sessions_folder";
  OCSCacheFolderURL = "$DB/sogo_cache_folder";
  OCSStoreURL = "$DB/sogo_store";
  OCSAclURL = "$DB/sogo_acl";
  OCSEMailAlarmsFolderURL = "$DB/sogo_alarms_folder";
  SOGoUserSources = (
    {
      type = sql;
      id = users;
      viewURL = "$DB/sogo_users";
      canAuthenticate = YES;
      isAddressBook = YES;
      displayName = "Lab users";
      userPasswordAlgorithm = plain;
    }
  );
  SOGoMailDomain = "$DOMAIN";
  SOGoLanguage = English;
  SOGoTimeZone = UTC;
  SOGoMailingMechanism = smtp;
  SOGoSMTPServer = "smtp://127.0.0.1:25";
  SOGoIMAPServer = "imap://127.0.0.1:143";
  SOGoSentFolderName = Sent;
  SOGoTrashFolderName = Trash;
  SOGoDraftsFolderName = Drafts;
  SOGoIMAPAclConformsToIMAPExt = YES;
  SOGoVacationEnabled = NO;
  SOGoForwardEnabled = NO;
  SOGoSieveScriptsEnabled = NO;
  SOGoAppointmentSendEMailNotifications = NO;
  SOGoMemcachedHost = 127.0.0.1;
  SOGoMaximumPingInterval = $PING_MAX;
  SOGoMaximumSyncInterval = $PING_MAX;
  SOGoInternalSyncInterval = $POLL;
  SOGoEASDebugEnabled = $DEBUG;
}
EOF
chown root:sogo /etc/sogo/sogo.conf
chmod 640 /etc/sogo/sogo.conf
# the init script passes -WOWorkersCount \$PREFORK, which wins over sogo.conf
cat > /etc/default/sogo <<EOF
# written by easload deploy/sogo/setup.sh
PREFORK=$WORKERS
EOF

# -- start (or restart, to read the configuration written above) ------------------------------
/etc/init.d/sogo stop >/dev/null 2>&1 || true
postfix status >/dev/null 2>&1 && postfix reload || true
if [ -f /run/dovecot/master.pid ] && pgrep -F /run/dovecot/master.pid >/dev/null 2>&1; then doveadm reload; fi
start_services
# SOGo's EAS mail Sync keys are "UIDNEXT-HIGHESTMODSEQ" read from the SELECT answer
# (SoObjects/Mailer/SOGoMailFolder.m davCollectionTag), and it enables QRESYNC only later in the
# request; Dovecot reports HIGHESTMODSEQ on a plain SELECT only once some client has enabled
# CONDSTORE on that mailbox (RFC 7162 3.1).  Without this a new mailbox's first Sync (SyncKey -1)
# compares equal to the "-1" tag and returns nothing, for ever.  So: CONDSTORE once per folder.
i=1
while [ $i -le "$USERS" ]; do
    printf 'a ENABLE CONDSTORE\r\nb SELECT INBOX\r\nc SELECT Drafts\r\nd SELECT Sent\r\ne SELECT Trash\r\nf CREATE Junk\r\ng SELECT Junk\r\nh LOGOUT\r\n' \
        | doveadm exec imap -u "user$i" >/dev/null 2>&1 || say "user$i: could not enable CONDSTORE"
    i=$((i + 1))
done
say "SOGo EAS: http://127.0.0.1:$PORT/SOGo/Microsoft-Server-ActiveSync (users user1..user$USERS, password Pass<n>!)"
