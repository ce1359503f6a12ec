namespace tether::acp {}
