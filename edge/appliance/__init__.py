"""The store box as an appliance: systemd notification and watchdog, install/uninstall, the first-boot ticket."""
