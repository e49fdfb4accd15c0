use super::*;

#[test]
fn sizes_parse_with_binary_units() {
    let cases = [
        ("1024", Some(1024)),
        ("1KiB", Some(1024)),
        ("500MiB", Some(500 << 20)),
        ("2 GiB", Some(2 << 30)),
        ("0", None),
        ("5XB", None),
        ("", None),
    ];
    for (text, expected) in cases {
        assert_eq!(parse_size(text).ok(), expected, "{text}");
    }
}

#[test]
fn flags_win_over_file_and_defaults_fill_the_rest() {
    let file: FileConfig =
        toml::from_str("https = \"0.0.0.0:9443\"\nupload_limit = \"1MiB\"\nadmin_user = \"root\"")
            .unwrap();
    let args = ServeArgs {
        https: Some("127.0.0.1:0".into()),
        ..ServeArgs::default()
    };
    let config = Config::merge(args, file, None).unwrap();
    assert_eq!(config.https, "127.0.0.1:0".parse().unwrap());
    assert_eq!(config.upload_limit, 1 << 20);
    assert_eq!(config.image_size_limit, DEFAULT_IMAGE_SIZE_LIMIT);
    assert_eq!(config.tenant_storage_quota, DEFAULT_TENANT_STORAGE_QUOTA);
    assert_eq!(config.admin_user, "root");
    assert_eq!(config.data_dir, PathBuf::from(DEFAULT_DATA_DIR));
    assert_eq!(config.tls, TlsSource::Generated);
    assert_eq!(config.connections.max_log_streams, DEFAULT_MAX_LOG_STREAMS);
}

#[test]
fn cidrs_parse_and_match() {
    let cases = [
        ("10.0.0.0/8", "10.200.1.2", true),
        ("10.0.0.0/8", "11.0.0.1", false),
        ("127.0.0.1", "127.0.0.1", true),
        ("127.0.0.1", "127.0.0.2", false),
        ("0.0.0.0/0", "203.0.113.9", true),
        ("192.168.1.0/24", "::ffff:192.168.1.7", true),
        ("::1", "::1", true),
        ("fd00::/8", "fd12::1", true),
        ("fd00::/8", "10.0.0.1", false),
        ("::/0", "2001:db8::1", true),
    ];
    for (cidr, ip, expected) in cases {
        let parsed = Cidr::parse(cidr).unwrap();
        assert_eq!(
            parsed.contains(ip.parse().unwrap()),
            expected,
            "{cidr} ∋ {ip}"
        );
    }
    for bad in ["10.0.0.0/33", "::/129", "host", "10.0.0.0/x", ""] {
        assert!(Cidr::parse(bad).is_err(), "{bad}");
    }
}

#[test]
fn bad_settings_are_named() {
    let cases = [
        ("https = \"nonsense\"", "https"),
        ("upload_limit = -1", "upload_limit"),
        ("image_size_limit = 0", "image_size_limit"),
        ("image_size_limit = \"2TB\"", "image_size_limit"),
        ("tenant_storage_quota = true", "tenant_storage_quota"),
        ("tenant_storage_quota = \"-5\"", "tenant_storage_quota"),
        ("token_lifetime = 5", "token_lifetime"),
        ("admin_user = \"a/b\"", "admin_user"),
        ("tls_cert = \"/nonexistent.pem\"", "tls_key"),
        ("reconcile_interval = 0", "reconcile_interval"),
        ("pids_limit = 3", "pids_limit"),
        ("deploy_concurrency = 0", "deploy_concurrency"),
        ("deploy_concurrency = 65", "deploy_concurrency"),
        ("access_log = \"sample:0\"", "access_log"),
        ("access_log = \"some\"", "access_log"),
        ("proxy_timeout = 0", "proxy_timeout"),
        ("proxy_connect_timeout = 0", "proxy_connect_timeout"),
        ("proxy_read_timeout = 0", "proxy_read_timeout"),
        ("proxy_eject_period = 0", "proxy_eject_period"),
        ("idle_timeout = 0", "idle_timeout"),
        ("body_timeout = 0", "body_timeout"),
        ("max_connections = 0", "max_connections"),
        ("max_client_connections = 0", "max_client_connections"),
        ("max_container_connections = 0", "max_container_connections"),
        ("max_log_streams = 0", "max_log_streams"),
        ("container_labels = [\"nokey\"]", "container_labels"),
        ("internal_api = \"8111\"", "internal_api"),
        ("max_container_memory = \"lots\"", "max_container_memory"),
        ("max_container_cpu = \"-1\"", "max_container_cpu"),
        ("max_replicas = 0", "max_replicas"),
        ("tenant_max_memory = 0", "tenant_max_memory"),
        ("tenant_max_cpu = \"0\"", "tenant_max_cpu"),
        ("tenant_max_containers = 0", "tenant_max_containers"),
        ("login_user_failures = 0", "login_user_failures"),
        ("login_lockout = 0", "login_lockout"),
        ("password_hash_concurrency = 0", "password_hash_concurrency"),
        ("trusted_proxies = [\"10.0.0.0/33\"]", "trusted_proxies"),
        ("trusted_proxies = [\"proxy.local\"]", "trusted_proxies"),
        ("network_pool = \"fd00::/64\"", "network_pool"),
        ("network_pool = \"10.213.0.1/16\"", "network_pool"),
        ("network_pool = \"lots\"", "network_pool"),
        ("network_subnet_prefix = 30", "network_subnet_prefix"),
        (
            "network_pool = \"10.0.0.0/24\"\nnetwork_subnet_prefix = 20",
            "network_subnet_prefix",
        ),
    ];
    for (text, name) in cases {
        let file: FileConfig = toml::from_str(text).unwrap();
        let err = Config::merge(ServeArgs::default(), file, None)
            .unwrap_err()
            .to_string();
        assert!(err.contains(name), "{text}: {err}");
    }
    assert!(toml::from_str::<FileConfig>("htps = \"x\"").is_err());
}

#[test]
fn limits_parse_from_the_file_and_unset_ones_stay_for_the_host() {
    let file: FileConfig = toml::from_str(
        "max_container_memory = \"2GiB\"\nmax_container_cpu = 1.5\ntenant_max_cpu = \"500m\"\nrefuse_root_images = true\nhost_firewall = false",
    )
    .unwrap();
    let config = Config::merge(ServeArgs::default(), file, None).unwrap();
    let expected = LimitSettings {
        container_memory: Some(2 << 30),
        container_millicores: Some(1500),
        replicas: DEFAULT_MAX_REPLICAS,
        tenant_memory: None,
        tenant_millicores: Some(500),
        tenant_containers: DEFAULT_TENANT_MAX_CONTAINERS,
        refuse_root_images: true,
    };
    assert_eq!(config.limits, expected);
    assert!(!config.host_firewall);
    let defaults = Config::merge(ServeArgs::default(), FileConfig::default(), None).unwrap();
    assert!(defaults.host_firewall && !defaults.limits.refuse_root_images);
}

#[test]
fn network_holders_come_from_the_file_unless_a_flag_says_otherwise() {
    let holders = |args: ServeArgs, text: &str| {
        let file: FileConfig = toml::from_str(text).unwrap();
        match Config::merge(args, file, None).unwrap().runtime {
            runtime::RuntimeChoice::Docker(choice) => choice.network_holders,
            runtime::RuntimeChoice::Swarm(_) => panic!("swarm"),
        }
    };
    assert!(holders(ServeArgs::default(), ""));
    assert!(!holders(ServeArgs::default(), "network_holders = false"));
    let on = ServeArgs {
        network_holders: Some(true),
        ..ServeArgs::default()
    };
    assert!(holders(on, "network_holders = false"));
}

#[test]
fn weak_admin_passwords_are_config_errors() {
    let cases = [
        ("Admin-Passw0rd", true),
        ("password", false),
        ("aaaaaaaaaaaa", false),
        ("administrator", false),
        ("short", false),
    ];
    for (password, ok) in cases {
        let result = Config::merge(
            ServeArgs::default(),
            FileConfig::default(),
            Some(password.into()),
        );
        match result {
            Ok(_) => assert!(ok, "{password} accepted"),
            Err(e) => {
                assert!(!ok, "{password}: {e}");
                assert!(e.to_string().contains("BERTH_ADMIN_PASSWORD"), "{e}");
            }
        }
    }
}
