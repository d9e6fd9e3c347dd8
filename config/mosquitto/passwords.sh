#!/bin/sh
# Writes the broker's password file (hashed) from the environment: run at every container start
# by docker-compose, so no password is committed or baked into an image.
#   sh passwords.sh /mosquitto/data/passwd
# Users (their topics are in acl): guanjia (the gateway), operator (control topics), devices
# (device bridges).
set -eu
file="${1:?usage: passwords.sh PASSWORD_FILE}"
gateway="${MQTT_GATEWAY_PASSWORD:?set MQTT_GATEWAY_PASSWORD}"
operator="${MQTT_OPERATOR_PASSWORD:?set MQTT_OPERATOR_PASSWORD}"
devices="${MQTT_DEVICES_PASSWORD:?set MQTT_DEVICES_PASSWORD}"
umask 077
mosquitto_passwd -c -b "$file" guanjia "$gateway"
mosquitto_passwd -b "$file" operator "$operator"
mosquitto_passwd -b "$file" devices "$devices"
# Mosquitto drops to its own user before reading the file.
if [ "$(id -u)" = 0 ] && id mosquitto >/dev/null 2>&1; then
  chown mosquitto:mosquitto "$file"
fi
