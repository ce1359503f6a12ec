namespace tether::cli {}
