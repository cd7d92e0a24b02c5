package io.triopipe.worker;

import java.io.ByteArrayInputStream;
import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.security.GeneralSecurityException;
import java.security.KeyFactory;
import java.security.KeyStore;
import java.security.PrivateKey;
import java.security.cert.Certificate;
import java.security.cert.CertificateFactory;
import java.security.spec.InvalidKeySpecException;
import java.security.spec.PKCS8EncodedKeySpec;
import java.util.Base64;
import java.util.Collection;
import java.util.regex.Matcher;
import java.util.regex.Pattern;
import javax.net.ssl.KeyManagerFactory;
import javax.net.ssl.SSLContext;
import javax.net.ssl.TrustManagerFactory;

/**
 * An {@link SSLContext} for {@code wss://} from PEM files: the CA to trust, and the
 * worker's client certificate and key for mutual TLS. A conformance or command-line
 * worker passes it {@code TRIO_PIPE_CAFILE}, {@code TRIO_PIPE_CERTFILE} and {@code
 * TRIO_PIPE_KEYFILE}.
 */
public final class PemTls {
    private static final Pattern PRIVATE_KEY =
            Pattern.compile("-----BEGIN PRIVATE KEY-----([A-Za-z0-9+/=\\s]+)-----END PRIVATE KEY-----");
    private static final char[] NO_PASSWORD = new char[0];

    private PemTls() {}

    /**
     * Builds the context.
     *
     * @param caFile the CA certificates (PEM) to trust instead of the JDK's, or null
     *     for the JDK's
     * @param certFile the client certificate chain (PEM), or null for none
     * @param keyFile its private key (unencrypted PKCS#8 PEM: {@code BEGIN PRIVATE
     *     KEY}, RSA or EC), or null when it is in {@code certFile}
     * @return a TLS context
     * @throws IOException if a file cannot be read or holds no certificate or key
     * @throws GeneralSecurityException if the certificates or the key are unusable
     * @throws IllegalArgumentException for a key file without a certificate file
     */
    public static SSLContext sslContext(Path caFile, Path certFile, Path keyFile)
            throws IOException, GeneralSecurityException {
        TrustManagerFactory trust = null;
        if (caFile != null) {
            KeyStore roots = emptyStore();
            int i = 0;
            for (Certificate ca : certificates(caFile)) {
                roots.setCertificateEntry("ca-" + i++, ca);
            }
            trust = TrustManagerFactory.getInstance(TrustManagerFactory.getDefaultAlgorithm());
            trust.init(roots);
        }
        KeyManagerFactory keys = null;
        if (certFile != null) {
            KeyStore identity = emptyStore();
            identity.setKeyEntry(
                    "worker",
                    privateKey(keyFile != null ? keyFile : certFile),
                    NO_PASSWORD,
                    certificates(certFile).toArray(Certificate[]::new));
            keys = KeyManagerFactory.getInstance(KeyManagerFactory.getDefaultAlgorithm());
            keys.init(identity, NO_PASSWORD);
        } else if (keyFile != null) {
            throw new IllegalArgumentException("a key file without a certificate file");
        }
        SSLContext context = SSLContext.getInstance("TLS");
        context.init(
                keys != null ? keys.getKeyManagers() : null, trust != null ? trust.getTrustManagers() : null, null);
        return context;
    }

    private static KeyStore emptyStore() throws IOException, GeneralSecurityException {
        KeyStore store = KeyStore.getInstance(KeyStore.getDefaultType());
        store.load(null, null);
        return store;
    }

    private static Collection<? extends Certificate> certificates(Path file)
            throws IOException, GeneralSecurityException {
        // X.509 certificate factories read PEM blocks and skip other text (a key).
        String text = Files.readString(file, StandardCharsets.US_ASCII);
        StringBuilder blocks = new StringBuilder();
        Matcher matcher = Pattern.compile("-----BEGIN CERTIFICATE-----[^-]+-----END CERTIFICATE-----")
                .matcher(text);
        while (matcher.find()) {
            blocks.append(matcher.group()).append('\n');
        }
        if (blocks.isEmpty()) {
            throw new IOException(file + " holds no PEM certificate");
        }
        return CertificateFactory.getInstance("X.509")
                .generateCertificates(new ByteArrayInputStream(blocks.toString().getBytes(StandardCharsets.US_ASCII)));
    }

    private static PrivateKey privateKey(Path file) throws IOException, GeneralSecurityException {
        Matcher matcher = PRIVATE_KEY.matcher(Files.readString(file, StandardCharsets.US_ASCII));
        if (!matcher.find()) {
            throw new IOException(file + " holds no unencrypted PKCS#8 private key (BEGIN PRIVATE KEY)");
        }
        PKCS8EncodedKeySpec spec = new PKCS8EncodedKeySpec(Base64.getMimeDecoder().decode(matcher.group(1)));
        for (String algorithm : new String[] {"EC", "RSA"}) {
            try {
                return KeyFactory.getInstance(algorithm).generatePrivate(spec);
            } catch (InvalidKeySpecException e) {
                // try the next
            }
        }
        throw new InvalidKeySpecException(file + ": neither an EC nor an RSA key");
    }
}
