#!/bin/sh
# Writes the broker's password file (hashed) from the environment: run at every container start
# by docker-compose, so no password is committed or baked into an image.
#   sh passwords.sh /mosquitto/data/passwd
# Users (their topics are in acl): guanjia (the gateway), operator (control topics), devices
# (device bridges). The passwords reach mosquitto_passwd on its standard input, never on a
# command line (where `ps` would show them); the file is written beside the old one and
# renamed over it, so a failed run leaves the previous file whole.
set -eu
file="${1:?usage: passwords.sh PASSWORD_FILE}"
gateway="${MQTT_GATEWAY_PASSWORD:?set MQTT_GATEWAY_PASSWORD}"
operator="${MQTT_OPERATOR_PASSWORD:?set MQTT_OPERATOR_PASSWORD}"
devices="${MQTT_DEVICES_PASSWORD:?set MQTT_DEVICES_PASSWORD}"
umask 077
new="$file.new"
rm -f "$new"
add() {
  # $1 user, $2 password (mosquitto_passwd asks twice), $3 -c for the first user
  printf '%s\n%s\n' "$2" "$2" | mosquitto_passwd ${3:+"$3"} "$new" "$1" >/dev/null
}
add guanjia "$gateway" -c
add operator "$operator"
add devices "$devices"
# Mosquitto drops to its own user before reading the file.
if [ "$(id -u)" = 0 ] && id mosquitto >/dev/null 2>&1; then
  chown mosquitto:mosquitto "$new"
fi
mv -f "$new" "$file"
